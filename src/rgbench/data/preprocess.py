"""Cached preprocessing of MNIST: the 4-level images, 32x32 RGM inputs, exemplars.

The 4-level images are one concept with one home here: ``LEVELS``, the bin edges that make
them, the grey each level is drawn as (``levels_to_grey``), and their train / validation /
test splits (``load_levels``). Every model, sampler and figure of them imports these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from rgbench.data.mnist import train_mask
from rgbench.io import load_npz

CLASSES = 10  # MNIST's digits
# Grey levels of the discretised images. The samplers' kernels are written for exactly 4
# (config data.discrete_edges is pinned to 3 edges by the schema).
LEVELS = 4
# Bin edges of seed 003: [0, .25) -> 0, [.25, .5) -> 1, [.5, .75) -> 2, [.75, 1] -> 3.
FOUR_LEVEL_EDGES = (0.25, 0.5, 0.75)


def discretise(images: np.ndarray, edges: tuple[float, ...] = FOUR_LEVEL_EDGES) -> np.ndarray:
    """Map uint8 pixels (0..255) to levels 0..len(edges) by the bin edges on [0, 1]."""
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    scaled = images.astype(np.float32) / 255.0
    return np.digitize(scaled, np.asarray(edges, dtype=np.float32), right=False).astype(np.uint8)


def levels_to_grey(levels: np.ndarray) -> np.ndarray:
    """Level images -> float32 grey level / (LEVELS - 1) in [0, 1]: what the reference
    classifier sees and what the figures show.

    Not the bin centres: those put every background pixel at 0.125 grey, which the
    reference classifier (trained on MNIST, whose background is exactly 0, with outlier
    exposure) reads as noise. Chosen on the 5,000 validation images: recognised (> 0.9)
    28% at bin centres (FID 315), 97.8% at level / 3 (FID 3.9), 97.7% at the training
    set's mean grey per bin (FID 1.5); level / 3 needs no fitted values
    (docs/decisions/potts_ebm.md)."""
    return (np.asarray(levels, dtype=np.float32) / float(LEVELS - 1)).astype(np.float32)


@dataclass
class LevelData:
    """The splits of the 4-level cache: (N, 28, 28) uint8 levels and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_levels(mnist4: str | os.PathLike, train_limit: int = 0, test_limit: int = 0) -> LevelData:
    """Train (without the validation rows), validation and test splits of the 4-level cache;
    ``train_limit`` / ``test_limit``: the first N images of a split (0: all)."""
    data = load_npz(mnist4)
    keep = np.flatnonzero(train_mask(len(data["train_labels"]), data["val_index"]))
    if train_limit:
        keep = keep[:train_limit]
    stop = test_limit or len(data["test_labels"])
    val = np.asarray(data["val_index"])
    return LevelData(data["train_levels"][keep], data["train_labels"][keep].astype(np.int64),
                     data["train_levels"][val], data["train_labels"][val].astype(np.int64),
                     data["test_levels"][:stop], data["test_labels"][:stop].astype(np.int64))


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
    from scipy import stats  # imported where used: scipy costs every importing job ~0.3 s

    ranks = stats.rankdata(flat, axis=1, method="average")
    scaled = (ranks - 1.0) / max(flat.shape[1] - 1, 1) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8).reshape(images.shape)


# -- the SPM demo's preprocessing (DEM_MNIST_RGM.m): bicubic resize, FWHM smoothing with
# mirror padding, ordinal ranks in column-major order

RGM_RESIZE = ("bicubic", "bilinear")
RGM_BOUNDARY = ("reflect", "constant")
RGM_RANKS = ("ordinal", "average")


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
    from scipy import ndimage

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


def exemplar_index(labels: np.ndarray, per_class: int, classes: int = CLASSES) -> np.ndarray:
    """Indices (classes, per_class) of the first ``per_class`` images of each class, in order."""
    index = np.empty((classes, per_class), dtype=np.int64)
    for digit in range(classes):
        found = np.flatnonzero(labels == digit)[:per_class]
        if len(found) < per_class:
            raise ValueError(f"only {len(found)} images of class {digit}, {per_class} requested")
        index[digit] = found
    return index


def balanced_subset_index(labels: np.ndarray, size: int, seed: int, allowed: np.ndarray | None = None,
                          classes: int = CLASSES) -> np.ndarray:
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
