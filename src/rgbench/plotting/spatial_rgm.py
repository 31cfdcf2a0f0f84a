"""Spatial RGM figures, drawn from the evaluation job's saved arrays only."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from rgbench.io import load_npz
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
    """Where a one-cell code change lands: the centre cell's change map with its derived
    window, and the share of change inside the window / inside the cell's own patch per cell."""
    a = load_npz(arrays_path)
    fig, axes = new_figure(ncols=4, width=3.0, height=3.0)
    ax_img, ax_change, ax_window, ax_own = axes[0]
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
    ax_change.set_title(f"|change|, cell ({centre},{centre}) switched\ncyan: derived window", fontsize=9)
    for ax, key, title in ((ax_window, "locality_per_cell", "share inside window"),
                           (ax_own, "locality_per_cell_own", "share inside own 4x4 patch")):
        values = a[key]
        im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
        for r in range(values.shape[0]):
            for c in range(values.shape[1]):
                ax.text(c, r, f"{values[r, c]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if values[r, c] < 0.6 else "black")
        ax.set_title(f"{title}\n(mean {np.nanmean(values):.2f})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    save(fig, output)


FIGURES: dict[str, Callable[[str | os.PathLike, str | os.PathLike], None]] = {
    "abstraction": abstraction,
    "conditional_samples": conditional_samples,
    "locality": locality,
}


def figure_job(config: Mapping[str, Any], arrays_path: str | os.PathLike, output: str | os.PathLike) -> None:
    """One figure, named by ``config["figure"]``, from the evaluation's arrays."""
    use_dpi(config["dpi"])
    if config["figure"] not in FIGURES:
        raise ValueError(f"unknown spatial_rgm figure {config['figure']!r}; expected one of {sorted(FIGURES)}")
    FIGURES[config["figure"]](arrays_path, output)
