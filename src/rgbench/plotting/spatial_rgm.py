"""Spatial RGM figures: one run's from its evaluation arrays, the seeds figure from every
run's metrics.json and the experiment's claims file (for the anchors)."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from rgbench.io import load_npz, read_json
from rgbench.plotting.style import image_grid, new_figure, save, use_dpi


def abstraction(arrays_path: str | os.PathLike, output: str | os.PathLike) -> None:
    """Per example: input, its 7x7 map of z1 codes, and the z2 distribution over digits."""
    a = load_npz(arrays_path)
    n = len(a["example_images"])
    fig, axes = new_figure(ncols=4, nrows=n, width=2.3, height=2.0)
    # one distinct colour per code (tab20 alone would repeat colours beyond 20 codes)
    import matplotlib.pyplot as plt

    colours = np.concatenate([plt.get_cmap("tab20b").colors, plt.get_cmap("tab20c").colors])
    codes_max = max(int(a["example_codes"].max()) if a["example_codes"].size else 1, 1)
    code_cmap = ListedColormap(colours[np.arange(codes_max + 1) % len(colours)])
    for k in range(n):
        ax_in, ax_code, ax_rec, ax_z2 = axes[k]
        ax_in.imshow(a["example_images"][k], cmap="gray_r", vmin=0, vmax=1)
        ax_in.set_title(f"input (label {int(a['example_labels'][k])})" if k == 0 else
                        f"label {int(a['example_labels'][k])}", fontsize=9)
        ax_code.imshow(a["example_codes"][k], cmap=code_cmap, vmin=-0.5, vmax=codes_max + 0.5,
                       interpolation="nearest")
        for r in range(a["example_codes"].shape[1]):
            for c in range(a["example_codes"].shape[2]):
                ax_code.text(c, r, str(int(a["example_codes"][k, r, c])), ha="center", va="center", fontsize=5)
        ax_rec.imshow(a["example_recon"][k], cmap="gray_r", vmin=0, vmax=1)
        probs = a["example_z2"][k]
        ax_z2.bar(np.arange(len(probs)), probs, color=["C1" if d == probs.argmax() else "C0" for d in range(len(probs))])
        ax_z2.set_ylim(0, 1)
        ax_z2.set_xticks(np.arange(len(probs)))
        ax_z2.tick_params(labelsize=7)
        for ax in (ax_in, ax_code, ax_rec):
            ax.set_axis_off()
        if k == 0:
            ax_code.set_title("z1: 7x7 hard codes", fontsize=9)
            ax_rec.set_title("decoded from z1", fontsize=9)
            ax_z2.set_title("z2: q(digit | z1)", fontsize=9)
    save(fig, output)


def conditional_samples(arrays_path: str | os.PathLike, output: str | os.PathLike) -> None:
    """One row per digit: samples of z1 ~ p(z1 | z2 = digit), decoded; share recognised on the right."""
    a = load_npz(arrays_path)
    samples = a["samples"]  # (digits, per_digit, 28, 28)
    digits, per_digit = samples.shape[:2]
    fig, axes = new_figure(width=0.75 * per_digit + 1.5, height=0.75 * digits + 0.6)
    ax = axes[0, 0]
    ax.imshow(image_grid(samples.reshape(-1, *samples.shape[2:]), ncols=per_digit, pad=2, fill=0.0), cmap="gray_r",
              vmin=0, vmax=1, interpolation="nearest")
    step = samples.shape[2] + 2
    ax.set_yticks([d * step + samples.shape[2] / 2 for d in range(digits)])
    ax.set_yticklabels([f"z2={d}  ({a['per_digit_recognition'][d]:.0%})" for d in range(digits)], fontsize=8)
    ax.set_xticks([])
    ax.grid(False)
    ax.set_title("concept-conditional samples (share recognised as the digit by the reference classifier)",
                 fontsize=9)
    save(fig, output)


def locality(arrays_path: str | os.PathLike, output: str | os.PathLike) -> None:
    """Where a one-cell code change lands: the centre cell's mean change map with its own
    4x4 patch and the decoder's window, and per cell the share of the change inside the
    cell's own patch (the ``locality`` column averages it, weighted by the change)."""
    a = load_npz(arrays_path)
    fig, axes = new_figure(ncols=3, width=3.0, height=3.0)
    ax_img, ax_change, ax_own = axes[0]
    ax_img.imshow(a["locality_image"], cmap="gray_r", vmin=0, vmax=1)
    ax_img.set_title("test image", fontsize=9)
    grid = a["windows"].shape[0]
    centre = grid // 2
    ax_change.imshow(a["locality_centre_change"], cmap="magma")
    r0, r1, c0, c1 = (int(v) for v in a["windows"][centre, centre])
    ax_change.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, ec="cyan", lw=1.5))
    patch = a["locality_image"].shape[0] // grid
    ax_change.add_patch(Rectangle((centre * patch - 0.5, centre * patch - 0.5), patch, patch, fill=False,
                                  ec="white", lw=1, ls="--"))
    ax_change.set_title(f"|change|, cell ({centre},{centre}) switched\ndashed: own 4x4 patch, cyan: window",
                        fontsize=9)
    values = a["locality_per_cell_own"]
    im = ax_own.imshow(values, cmap="viridis", vmin=0, vmax=1)
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            ax_own.text(c, r, f"{values[r, c]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if values[r, c] < 0.6 else "black")
    ax_own.set_title(f"share of the change inside the own patch\n(mean over cells {np.nanmean(values):.2f}; "
                     f"chance {patch * patch / a['locality_image'].size:.2f})", fontsize=9)
    fig.colorbar(im, ax=ax_own, fraction=0.046)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    save(fig, output)


# The seed's measures shown per grid in the seeds figure: column -> label.
MEASURES = {
    "test_accuracy": "test accuracy",
    "locality": "locality\n(own-patch share)",
    "conditional_recognition": "conditional\nrecognition",
    "diversity_ratio": "diversity /\nreal diversity",
    "global_switch_share": "global switch\nrecognised",
}


def _anchors(claims_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The published claims on this experiment, for the anchor marks (never re-typed here)."""
    from rgbench.evaluation.claims import load_claims

    return [{"column": c.column, "where": dict(c.where), "value": c.anchor_value, "threshold": c.threshold,
             "rule": c.rule, "tolerance": c.tolerance} for c in load_claims([claims_path])]


def seeds(metrics_files: Sequence[str | os.PathLike], claims_path: str | os.PathLike,
          output: str | os.PathLike) -> None:
    """Every run of every grid: training loss and validation accuracy per epoch (one line per
    seed, the mean bold), and the seed's measures as mean +- sd over seeds (dots: seeds),
    with the published anchors (crosses) and thresholds (dashes) of the claims."""
    records = [read_json(path) for path in metrics_files]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["params"]["grid"], int(record["params"]["epochs"])), []).append(record)
    anchors = _anchors(claims_path)
    fig, axes = new_figure(ncols=3, width=4.6, height=3.6)
    ax_loss, ax_val, ax_bar = axes[0]
    width = 0.8 / max(len(groups), 1)
    for g, ((grid, epochs), runs) in enumerate(sorted(groups.items())):
        colour = f"C{g}"
        label = f"{grid}, {epochs} epochs ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        losses = np.array([[h["train_loss"] for h in r["extra"]["history"]] for r in runs])
        vals = np.array([[h["extra"]["val_accuracy"] for h in r["extra"]["history"]] for r in runs])
        steps = np.arange(1, losses.shape[1] + 1)
        for row_loss, row_val in zip(losses, vals):
            ax_loss.plot(steps, row_loss, color=colour, alpha=0.35, lw=1)
            ax_val.plot(steps, 100 * row_val, color=colour, alpha=0.35, lw=1)
        ax_loss.plot(steps, losses.mean(0), color=colour, lw=2, marker="o", label=label)
        ax_val.plot(steps, 100 * vals.mean(0), color=colour, lw=2, marker="o", label=label)
        for anchor in anchors:
            column = anchor["column"]
            if column.startswith("train_loss_epoch_") and anchor["where"].get("grid") == grid:
                epoch = int(column.rsplit("_", 1)[1])
                ax_loss.errorbar([epoch], [anchor["value"]], yerr=[anchor["tolerance"]], color="k", marker="x",
                                 capsize=3, lw=1, label="seed 001's printed loss (+- tolerance)" if epoch == 1 else None)
        for m, column in enumerate(MEASURES):
            values = np.array([r["metrics"][column] for r in runs], dtype=float)
            x = m + (g - (len(groups) - 1) / 2) * width
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            ax_bar.bar(x, values.mean(), width=width, yerr=spread, color=colour, alpha=0.6, capsize=3,
                       label=label if m == 0 else None)
            ax_bar.plot(np.full(len(values), x), values, "k.", ms=4)
            if column == "locality":  # chance: a 4x4 patch at a random position
                chance = np.mean([r["metrics"]["locality_random_patch"] for r in runs])
                ax_bar.plot([x - width / 2, x + width / 2], [chance] * 2, color="C3", ls=":", lw=1.5,
                            label="chance (random 4x4 patch)" if g == 0 else None)
            for anchor in anchors:
                if anchor["column"] == column and anchor["where"].get("grid", grid) == grid:
                    ax_bar.plot([x - width / 2, x + width / 2], [anchor["threshold"]] * 2, "k--", lw=1)
                    if anchor["threshold"] != anchor["value"]:
                        ax_bar.plot([x], [anchor["value"]], "kx")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss over the epoch's batches", title="training loss",
                yscale="log")
    ax_loss.legend(fontsize=7)
    ax_val.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy (hard codes)")
    ax_val.legend(fontsize=7)
    for ax in (ax_loss, ax_val):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_bar.set_xticks(np.arange(len(MEASURES)))
    ax_bar.set_xticklabels(list(MEASURES.values()), fontsize=7, rotation=35, ha="right")
    ax_bar.set(ylim=(0, 1.05), title="the seed's measures, mean +- sd over seeds\n(dashes: claim thresholds)")
    ax_bar.legend(fontsize=7, loc="lower right")
    save(fig, output)


FIGURES: dict[str, Callable[[str | os.PathLike, str | os.PathLike], None]] = {
    "abstraction": abstraction,
    "conditional_samples": conditional_samples,
    "locality": locality,
}


def figures_job(config: Mapping[str, Any], inputs: Any, output: str | os.PathLike) -> None:
    """One figure, named by ``config["figure"]``: ``seeds`` from every run's metrics.json
    (``inputs.metrics``) and the claims file (``inputs.claims``), the others from the first
    run's arrays (``inputs.arrays``)."""
    use_dpi(config["dpi"])
    name = config["figure"]
    if name == "seeds":
        seeds(list(inputs.metrics), inputs.claims, output)
        return
    if name not in FIGURES:
        raise ValueError(f"unknown spatial_rgm figure {name!r}; expected one of {sorted(FIGURES) + ['seeds']}")
    FIGURES[name](inputs.arrays, output)
