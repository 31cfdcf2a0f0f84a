"""Cached preprocessing of MNIST: 32x32 RGM inputs, 4-level discretisation, exemplars."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, stats

# Bin edges of seed 003: [0, .25) -> 0, [.25, .5) -> 1, [.5, .75) -> 2, [.75, 1] -> 3.
FOUR_LEVEL_EDGES = (0.25, 0.5, 0.75)


def discretise(images: np.ndarray, edges: tuple[float, ...] = FOUR_LEVEL_EDGES) -> np.ndarray:
    """Map uint8 pixels (0..255) to levels 0..len(edges) by the bin edges on [0, 1]."""
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    scaled = images.astype(np.float32) / 255.0
    return np.digitize(scaled, np.asarray(edges, dtype=np.float32), right=False).astype(np.uint8)


def level_values(levels: int = 4) -> np.ndarray:
    """The grey value shown for each level when a discrete image is drawn (bin centres)."""
    return (np.arange(levels, dtype=np.float32) + 0.5) / levels


def resize(images: np.ndarray, size: int = 32) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 (N, H, W) images to (N, size, size) uint8."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return np.clip(np.rint(out.squeeze(1).numpy()), 0, 255).astype(np.uint8)


def rank_equalise(images: np.ndarray) -> np.ndarray:
    """Rank-based histogram equalisation per image: each pixel becomes its mean rank,
    scaled to 0..255, so every image's grey levels are spread uniformly."""
    flat = images.reshape(len(images), -1)
    ranks = stats.rankdata(flat, axis=1, method="average")
    scaled = (ranks - 1.0) / max(flat.shape[1] - 1, 1) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8).reshape(images.shape)


def rgm_inputs(images: np.ndarray, size: int = 32, smoothing_sigma: float = 2.0, equalise: bool = True) -> np.ndarray:
    """The first port's RGM input (uint8): bilinear resize, Gaussian smoothing with zero
    padding, then average-rank equalisation (or, without it, the smoothed grey values)."""
    if equalise:
        return rgm_ranks(images, size, "bilinear", smoothing_sigma, "constant", "average")
    block = smooth(resize(images, size).astype(np.float32), smoothing_sigma, "constant")
    return np.clip(np.rint(block), 0, 255).astype(np.uint8)


# -- the SPM demo's preprocessing (DEM_MNIST_RGM.m): bicubic resize, FWHM smoothing with
# mirror padding, ordinal ranks in column-major order

RGM_RESIZE = ("bicubic", "bilinear")
RGM_BOUNDARY = ("reflect", "constant")
RGM_RANKS = ("ordinal", "average")


def fwhm_to_sigma(fwhm: float) -> float:
    """A Gaussian's standard deviation from its full width at half maximum."""
    return float(fwhm) / math.sqrt(8.0 * math.log(2.0))


def resize_bicubic(images: np.ndarray, size: int) -> np.ndarray:
    """Bicubic (Keys a = -0.5, as MATLAB's imresize) float resize of (N, H, W) images in
    [0, 1], without clipping the overshoot; (N, size, size) float32."""
    from PIL import Image

    out = np.empty((len(images), size, size), dtype=np.float32)
    for i, image in enumerate(np.asarray(images, dtype=np.float32)):
        out[i] = np.asarray(Image.fromarray(image, mode="F").resize((size, size), Image.BICUBIC))
    return out


def smooth(images: np.ndarray, sigma: float, boundary: str) -> np.ndarray:
    """Separable Gaussian smoothing of each image with std ``sigma``, the kernel cut at
    fix(6 sigma) pixels (as spm_conv); ``reflect`` repeats the edge pixel (MATLAB's
    symmetric padding), ``constant`` pads with zeros."""
    if boundary not in RGM_BOUNDARY:
        raise ValueError(f"boundary must be one of {RGM_BOUNDARY}, got {boundary!r}")
    x = np.asarray(images, dtype=np.float64)
    if sigma <= 0:
        return x.copy()
    radius = max(1, int(6 * sigma))
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode=boundary, radius=(0, radius, radius))


def ordinal_ranks(images: np.ndarray) -> np.ndarray:
    """Each pixel's rank 1..n within its image, ties broken by column-major position (a
    stable sort of MATLAB's ``img(:)``); (N, H, W) uint16."""
    n, h, w = images.shape
    flat = np.asarray(images).transpose(0, 2, 1).reshape(n, h * w)      # column-major order
    order = np.argsort(flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, h * w + 1)[None, :], axis=1)
    return ranks.reshape(n, w, h).transpose(0, 2, 1).astype(np.uint16)


def rgm_ranks(images: np.ndarray, size: int, resize_method: str, smoothing_sigma: float, boundary: str,
              ranks: str, chunk: int = 10000) -> np.ndarray:
    """The RGM cache: resize, smooth, then rank every pixel within its image.

    ``ranks="ordinal"`` gives uint16 ranks 1..size^2 (the demo's sort); ``"average"`` the
    first port's uint8 average ranks scaled to 0..255. The model maps ranks to intensities
    (the demo's equalisation curve), so the curve's width stays a model setting.
    """
    if resize_method not in RGM_RESIZE:
        raise ValueError(f"resize must be one of {RGM_RESIZE}, got {resize_method!r}")
    if ranks not in RGM_RANKS:
        raise ValueError(f"ranks must be one of {RGM_RANKS}, got {ranks!r}")
    dtype = np.uint16 if ranks == "ordinal" else np.uint8
    out = np.empty((len(images), size, size), dtype=dtype)
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk]
        if resize_method == "bicubic":
            block = resize_bicubic(block.astype(np.float32) / 255.0, size)
        else:
            block = resize(block, size).astype(np.float32) / 255.0
        block = smooth(block, smoothing_sigma, boundary)
        out[start:start + chunk] = ordinal_ranks(block) if ranks == "ordinal" else rank_equalise(block)
    return out


def exemplar_index(labels: np.ndarray, per_class: int, classes: int = 10) -> np.ndarray:
    """Indices (classes, per_class) of the first ``per_class`` images of each class, in order."""
    index = np.empty((classes, per_class), dtype=np.int64)
    for digit in range(classes):
        found = np.flatnonzero(labels == digit)[:per_class]
        if len(found) < per_class:
            raise ValueError(f"only {len(found)} images of class {digit}, {per_class} requested")
        index[digit] = found
    return index


def balanced_subset_index(labels: np.ndarray, size: int, seed: int, allowed: np.ndarray | None = None,
                          classes: int = 10) -> np.ndarray:
    """A seeded class-balanced subset: ``size // classes`` indices per class, sorted."""
    if size % classes:
        raise ValueError(f"balanced subset size {size} is not a multiple of {classes}")
    rng = np.random.default_rng(seed)
    pool = np.arange(len(labels)) if allowed is None else np.asarray(allowed)
    chosen = []
    for digit in range(classes):
        candidates = pool[labels[pool] == digit]
        if len(candidates) < size // classes:
            raise ValueError(f"only {len(candidates)} images of class {digit}, {size // classes} requested")
        chosen.append(rng.choice(candidates, size=size // classes, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)
