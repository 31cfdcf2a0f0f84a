"""RGM figures, drawn from the arrays the jobs saved (never from a model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.evaluation.accuracy import accuracy_by_elbo_quantile
from rgbench.io import load_npz
from rgbench.plotting.style import image_grid, new_figure, save, use_dpi


def show_grid(ax, images: np.ndarray, ncols: int, title: str | None = None) -> None:
    """Dark ink on white, white gaps between images."""
    ax.imshow(image_grid(np.asarray(images), ncols, fill=0.0), cmap="gray_r", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


FIGURES = ("reconstructions", "generated", "accuracy_elbo", "diagnostics", "ablation")


def reconstructions(samples_npz: str, output: str | os.PathLike) -> None:
    """Rows: input, its quantised code, then the prediction from each level's posterior."""
    a = load_npz(samples_npz)
    rows = [a["originals"]] + list(a["reconstructions"])
    names = ["input", "quantised"] + [f"from level {k}" for k in range(1, len(rows) - 1)]
    n = len(rows[0])
    fig, axes = new_figure(1, len(rows), width=0.75 * n, height=0.9)
    for ax, images, name in zip(axes[:, 0], rows, names):
        show_grid(ax, images, ncols=n)
        ax.set_title(name, fontsize=8, loc="left")
    save(fig, output)


def generated(samples_npz: str, output: str | os.PathLike) -> None:
    """Per class: a sampled top state decoded through the most likely states below it;
    one fully ancestral sample per class; the predictive mean; a two-digit mixture."""
    a = load_npz(samples_npz)
    classes = a["generated_classes"]
    per_class = int(np.sum(classes == classes[0]))
    n_classes = len(np.unique(classes))
    fig, axes = new_figure(1, 4, width=0.7 * max(per_class, n_classes), height=2.4,
                           gridspec_kw={"height_ratios": [n_classes, 1, 1, 1]})
    show_grid(axes[0, 0], a["generated"], ncols=per_class,
              title="sampled top state, modes below (one row per digit 0-9)")
    show_grid(axes[1, 0], a["ancestral"], ncols=len(a["ancestral"]), title="ancestral sample per digit")
    show_grid(axes[2, 0], a["predictive"], ncols=len(a["predictive"]), title="predictive mean per digit")
    i, j = a["mix_pair"]
    show_grid(axes[3, 0], a["mixing"], ncols=len(a["mixing"]), title=f"mixing class beliefs {i} -> {j}")
    save(fig, output)


def accuracy_elbo(score_files: Sequence[str], output: str | os.PathLike, n_bins: int = 10) -> None:
    """Accuracy within ELBO deciles (lowest ELBO first) for each protocol (one scores file each)."""
    fig, axes = new_figure(1, 1, width=5.0, height=3.4)
    ax = axes[0, 0]
    for path in score_files:
        s = load_npz(path)
        acc = accuracy_by_elbo_quantile(s["correct"], s["elbo"], n_bins)
        centres = (np.arange(n_bins) + 0.5) / n_bins
        ax.plot(centres, acc, marker="o", label=f"{Path(path).parent.name} (overall {s['correct'].mean():.3f})")
    ax.set_xlabel("ELBO quantile (low to high)")
    ax.set_ylabel("classification accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend()
    save(fig, output)


def diagnostics(stream_npz: str, output: str | os.PathLike, window: int = 500) -> None:
    """The paper's diagnostics over the stream: the weight each level took in (the class
    tensor's > 0.5 counts as accepted), the mutual information per structure level, and
    the class level's MI against its bound ln(classes)."""
    a = load_npz(stream_npz)
    weights = a["mean_weight"]
    n = np.arange(1, len(weights) + 1)
    window = max(1, min(window, len(weights)))
    fig, axes = new_figure(3, 1, width=4.2, height=3.4)
    ax = axes[0, 0]
    accepted = (a["class_weight"] > 0.5).astype(np.float64)
    ax.plot(n, np.cumsum(accepted) / n, color="k", label="accepted (class weight > 0.5), cumulative")
    for level in range(weights.shape[1]):
        name = "class" if level == weights.shape[1] - 1 else f"level {level + 1}"
        moving = np.convolve(weights[:, level], np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(weights) + 1), moving, label=f"mean weight, {name}", lw=1)
    ax.set_xlabel("images streamed")
    ax.set_ylabel(f"share / weight (last {window})")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6)
    x = a["mi_index"] + 1
    ax = axes[0, 1]
    for level in range(a["mi"].shape[1] - 1):
        ax.plot(x, a["mi"][:, level], label=f"level {level + 1}")
    ax.set_yscale("log")
    ax.set_xlabel("images streamed")
    ax.set_ylabel("mutual information (nats, sum over tensors)")
    ax.legend(fontsize=7)
    ax = axes[0, 2]
    ax.plot(x, a["mi"][:, -1], label="class level")
    bound = float(np.log(int(a["n_classes"])))
    ax.axhline(bound, color="r", ls="--", label=f"ln {int(a['n_classes'])} = {bound:.3f}")
    ax.set_xlabel("images streamed")
    ax.set_ylabel("mutual information (nats)")
    ax.legend(fontsize=7)
    save(fig, output)


def ablation(table_csv: str, output: str | os.PathLike) -> None:
    """Validation accuracy and confident-half accuracy per ablation variant, +- 1 SE."""
    t = pd.read_csv(table_csv)
    y = np.arange(len(t))
    fig, axes = new_figure(1, 1, width=6.5, height=0.32 * len(t) + 1.2)
    ax = axes[0, 0]
    ax.errorbar(t["val_accuracy"], y, xerr=t["val_accuracy_se"], fmt="o", label="accuracy")
    ax.plot(t["confident_half_accuracy"], y, "s", mfc="none", label="confident half")
    full = t.set_index("variant").loc["full"]
    ax.axvline(full["val_accuracy"], color="C0", lw=0.8, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(t["variant"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"validation accuracy ({int(full['n_val'])} images, stream of {int(full['n_train'])})")
    ax.legend(fontsize=7)
    save(fig, output)


def figures_job(config: Mapping[str, Any], inputs: Sequence[str], output: str | os.PathLike) -> None:
    """One figure, named by ``config["figure"]``; accuracy_elbo reads ``config["elbo_bins"]``."""
    use_dpi(config["dpi"])
    figure = config["figure"]
    if figure == "reconstructions":
        reconstructions(inputs[0], output)
    elif figure == "generated":
        generated(inputs[0], output)
    elif figure == "accuracy_elbo":
        accuracy_elbo(inputs, output, n_bins=config["elbo_bins"])
    elif figure == "diagnostics":
        diagnostics(inputs[0], output)
    elif figure == "ablation":
        ablation(inputs[0], output)
    else:
        raise ValueError(f"unknown rgm figure {figure!r}; expected one of {FIGURES}")
