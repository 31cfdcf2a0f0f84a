"""RGM figures, drawn from the arrays the jobs saved (never from a model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rgbench.io import load_npz
from rgbench.models.rgm import accuracy_by_elbo_quantile
from rgbench.plotting.style import image_grid, new_figure, save, use_dpi


def show_grid(ax, images: np.ndarray, ncols: int, title: str | None = None) -> None:
    """Dark ink on white, white gaps between images."""
    ax.imshow(image_grid(np.asarray(images), ncols, fill=0.0), cmap="gray_r", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)

FIGURES = ("reconstructions", "generated", "accuracy_elbo", "accepted")


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
    """Accuracy within ELBO deciles (lowest ELBO first) for each protocol."""
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


def accepted(stream_npz: str, output: str | os.PathLike, window: int = 500) -> None:
    """Cumulative and moving-window fraction of stream images taken in by active learning."""
    a = load_npz(stream_npz)
    taken = a["accepted"].astype(np.float64)
    n = np.arange(1, len(taken) + 1)
    window = max(1, min(window, len(taken)))
    moving = np.convolve(taken, np.ones(window) / window, mode="valid")
    fig, axes = new_figure(1, 1, width=5.0, height=3.2)
    ax = axes[0, 0]
    ax.plot(n, np.cumsum(taken) / n, label="cumulative")
    ax.plot(np.arange(window, len(taken) + 1), moving, label=f"last {window} images")
    ax.set_xlabel("images streamed")
    ax.set_ylabel("fraction accepted")
    ax.set_ylim(0, 1.02)
    ax.legend()
    save(fig, output)


def figure_job(config: Mapping[str, Any], inputs: Sequence[str], output: str | os.PathLike) -> None:
    """One figure, named by ``config["figure"]``; accuracy_elbo reads ``config["elbo_bins"]``."""
    use_dpi(config["dpi"])
    figure = config["figure"]
    if figure == "reconstructions":
        reconstructions(inputs[0], output)
    elif figure == "generated":
        generated(inputs[0], output)
    elif figure == "accuracy_elbo":
        accuracy_elbo(inputs, output, n_bins=config["elbo_bins"])
    elif figure == "accepted":
        accepted(inputs[0], output)
    else:
        raise ValueError(f"unknown rgm figure {figure!r}; expected one of {FIGURES}")
