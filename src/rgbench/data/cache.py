"""Derived caches built from the 28x28 MNIST cache; every later rule reads these."""

from __future__ import annotations

import os

import numpy as np

from rgbench.data.mnist import train_mask
from rgbench.data.preprocess import balanced_subset_index, discretise, exemplar_index, resize, rgm_ranks
from rgbench.io import load_npz, save_npz_atomic


def build_rgm32(mnist28: str | os.PathLike, output: str | os.PathLike, size: int = 32, resize_method: str = "bicubic",
                smoothing_sigma: float = 0.8493, boundary: str = "reflect", ranks: str = "ordinal") -> None:
    """``{train,test}_resized`` (plain resize) and ``{train,test}_rgm``: the RGM's input,
    each pixel's rank within its smoothed image (:func:`rgm_ranks`; defaults: the SPM demo)."""
    data = load_npz(mnist28)
    arrays = {}
    for split in ("train", "test"):
        images = data[f"{split}_images"]
        arrays[f"{split}_resized"] = resize(images, size)
        arrays[f"{split}_rgm"] = rgm_ranks(images, size, resize_method, smoothing_sigma, boundary, ranks)
        arrays[f"{split}_labels"] = data[f"{split}_labels"]
    arrays["val_index"] = data["val_index"]
    save_npz_atomic(output, **arrays)


def build_discrete(mnist28: str | os.PathLike, output: str | os.PathLike, edges: tuple[float, ...]) -> None:
    """``{train,test}_levels`` in the original order, values 0..len(edges)."""
    data = load_npz(mnist28)
    save_npz_atomic(
        output,
        train_levels=discretise(data["train_images"], edges),
        test_levels=discretise(data["test_images"], edges),
        train_labels=data["train_labels"],
        test_labels=data["test_labels"],
        val_index=data["val_index"],
        edges=np.asarray(edges, dtype=np.float32),
    )


def build_subsets(mnist28: str | os.PathLike, output: str | os.PathLike, exemplars_per_class: int,
                  balanced_size: int, seed: int) -> None:
    """Exemplars: first N of each digit in the original training order (as the RGM paper
    takes them); balanced subset: seeded, drawn from the train split only."""
    data = load_npz(mnist28)
    labels = data["train_labels"]
    allowed = np.flatnonzero(train_mask(len(labels), data["val_index"]))
    save_npz_atomic(
        output,
        exemplar_index=exemplar_index(labels, exemplars_per_class),
        balanced_index=balanced_subset_index(labels, balanced_size, seed, allowed=allowed),
    )
