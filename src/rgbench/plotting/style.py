"""One consistent figure style for every experiment."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; no display on cluster nodes or CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rgbench.io import save_figure_atomic  # noqa: E402

PALETTE = "colorblind"
_dpi = 130  # set per figure job from the config's `figures.dpi` (use_dpi)


def use_dpi(dpi: int) -> None:
    """Resolution of every figure this process draws from now on (config `figures.dpi`)."""
    global _dpi
    if not 50 <= int(dpi) <= 600:
        raise ValueError(f"dpi must be in [50, 600], got {dpi}")
    _dpi = int(dpi)


def apply_style() -> None:
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": _dpi, "savefig.dpi": _dpi, "savefig.bbox": "tight",
                         "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.5, height: float = 3.4, **kwargs: Any):
    apply_style()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)


def save(figure: Any, path: str | os.PathLike) -> None:
    save_figure_atomic(figure, path)
    plt.close(figure)


def image_grid(images: np.ndarray, ncols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile (N, H, W) or (N, H, W, C) images into one array with ``pad`` px between them."""
    images = np.asarray(images)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    h, w = images.shape[1:3]
    shape = (nrows * (h + pad) - pad, ncols * (w + pad) - pad) + images.shape[3:]
    grid = np.full(shape, fill, dtype=np.float32)
    for k, image in enumerate(images):
        r, c = divmod(k, ncols)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = image
    return grid


def show_grid(ax: Any, images: np.ndarray, ncols: int, title: str | None = None, cmap: str = "gray_r") -> None:
    """Draw an image grid on ``ax`` (images in [0, 1]) with no axes ticks."""
    ax.imshow(image_grid(images, ncols), cmap=cmap if np.asarray(images).ndim == 3 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
