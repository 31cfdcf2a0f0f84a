"""Cached preprocessing of MNIST: 32x32 RGM inputs, 4-level discretisation, exemplars."""

from __future__ import annotations

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


def gaussian_smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each image (not across images) with std ``sigma`` pixels."""
    if sigma <= 0:
        return images.copy()
    smoothed = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma), mode="constant")
    return smoothed


def rank_equalise(images: np.ndarray) -> np.ndarray:
    """Rank-based histogram equalisation per image: each pixel becomes its mean rank,
    scaled to 0..255, so every image's grey levels are spread uniformly."""
    flat = images.reshape(len(images), -1)
    ranks = stats.rankdata(flat, axis=1, method="average")
    scaled = (ranks - 1.0) / max(flat.shape[1] - 1, 1) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8).reshape(images.shape)


def rgm_inputs(images: np.ndarray, size: int = 32, smoothing_sigma: float = 2.0, equalise: bool = True,
               chunk: int = 10000) -> np.ndarray:
    """The RGM's input: resize to ``size``, smooth, then rank-equalise (each optional)."""
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        block = resize(images[start:start + chunk], size).astype(np.float32)
        block = gaussian_smooth(block, smoothing_sigma)
        if equalise:
            out[start:start + chunk] = rank_equalise(block)
        else:
            out[start:start + chunk] = np.clip(np.rint(block), 0, 255).astype(np.uint8)
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
