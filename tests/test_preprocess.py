"""Cached preprocessing: discretisation, exemplars, balanced subsets, RGM inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgbench.data.preprocess import (
    balanced_subset_index,
    discretise,
    exemplar_index,
    level_values,
    rank_equalise,
    resize,
    rgm_inputs,
)
from rgbench.io import load_npz


def test_four_level_bins_exact() -> None:
    pixels = np.array([[0, 63, 64, 127, 128, 191, 192, 255]], dtype=np.uint8)
    # 63/255 < .25 <= 64/255, 127/255 < .5 <= 128/255, 191/255 < .75 <= 192/255
    assert discretise(pixels).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]]
    assert np.allclose(level_values(4), [0.125, 0.375, 0.625, 0.875])


def test_discretise_rejects_float_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        discretise(np.zeros((2, 2), dtype=np.float32))


def test_exemplars_are_the_first_per_class_in_order() -> None:
    labels = np.array([3, 1, 3, 0, 1, 2, 0, 2, 3, 1, 0, 2])
    index = exemplar_index(labels, per_class=2, classes=4)
    assert index.tolist() == [[3, 6], [1, 4], [5, 7], [0, 2]]
    with pytest.raises(ValueError, match="class 0"):
        exemplar_index(labels, per_class=4, classes=4)


def test_balanced_subset_counts_seed_and_pool() -> None:
    labels = np.repeat(np.arange(10), 50)
    allowed = np.arange(0, 500, 2)
    a = balanced_subset_index(labels, 100, seed=3, allowed=allowed)
    assert np.bincount(labels[a]).tolist() == [10] * 10
    assert set(a) <= set(allowed)
    assert np.array_equal(a, balanced_subset_index(labels, 100, seed=3, allowed=allowed))
    assert not np.array_equal(a, balanced_subset_index(labels, 100, seed=4, allowed=allowed))
    with pytest.raises(ValueError, match="multiple"):
        balanced_subset_index(labels, 105, seed=0)


def test_rank_equalise_spreads_levels_uniformly() -> None:
    image = np.array([[[10, 10], [20, 200]]], dtype=np.float32)
    # ranks (ties averaged): 1.5, 1.5, 3, 4 -> (r-1)/3*255
    assert rank_equalise(image).tolist() == [[[42, 42], [170, 255]]]


def test_resize_and_rgm_inputs_shapes(mnist28: Path) -> None:
    images = load_npz(mnist28)["train_images"][:20]
    assert resize(images, 32).shape == (20, 32, 32)
    rgm = rgm_inputs(images, 32, smoothing_sigma=2.0, equalise=True)
    assert rgm.shape == (20, 32, 32) and rgm.dtype == np.uint8
    # after rank equalisation every image spans the full grey range
    assert (rgm.reshape(20, -1).max(axis=1) == 255).all()


def test_pipeline_caches_agree(mnist_cache_dir: Path) -> None:
    base = load_npz(mnist_cache_dir / "mnist28.npz")
    levels = load_npz(mnist_cache_dir / "mnist4.npz")
    subsets = load_npz(mnist_cache_dir / "subsets.npz")
    assert np.array_equal(levels["train_levels"], discretise(base["train_images"]))
    assert levels["train_levels"].max() == 3
    exemplars = subsets["exemplar_index"]
    assert exemplars.shape == (10, 13)
    for digit in range(10):
        assert (base["train_labels"][exemplars[digit]] == digit).all()
    assert not set(subsets["balanced_index"]) & set(base["val_index"])
