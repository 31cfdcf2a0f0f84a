"""Cached preprocessing: the 4-level images (levels, grey, splits), exemplars, balanced subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import yaml

from rgbench.data.preprocess import (
    FOUR_LEVEL_EDGES,
    LEVELS,
    balanced_subset_index,
    discretise,
    exemplar_index,
    levels_to_grey,
    load_levels,
    rank_equalise,
    resize,
)
from rgbench.io import load_npz

ROOT = Path(__file__).resolve().parents[1]


def test_four_level_bins_exact() -> None:
    pixels = np.array([[0, 63, 64, 127, 128, 191, 192, 255]], dtype=np.uint8)
    # 63/255 < .25 <= 64/255, 127/255 < .5 <= 128/255, 191/255 < .75 <= 192/255
    assert discretise(pixels).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]]


def test_levels_are_pinned_to_what_the_models_support() -> None:
    # the config may only give the edges of LEVELS levels: the samplers are written for them
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    edges = schema["properties"]["data"]["properties"]["discrete_edges"]
    assert edges["minItems"] == edges["maxItems"] == LEVELS - 1 == len(FOUR_LEVEL_EDGES)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert len(config["data"]["discrete_edges"]) == LEVELS - 1


def test_levels_are_drawn_as_level_over_the_top_level() -> None:
    grey = levels_to_grey(np.array([[0, 1], [2, 3]], dtype=np.uint8))
    assert grey.dtype == np.float32
    np.testing.assert_array_equal(grey, np.array([[0, 1 / 3], [2 / 3, 1]], dtype=np.float32))
    assert levels_to_grey(discretise(np.array([[0, 255]], dtype=np.uint8))).tolist() == [[0.0, 1.0]]


def test_level_splits_hold_out_the_validation_rows(tmp_path: Path) -> None:
    train = np.arange(10, dtype=np.uint8).repeat(4).reshape(10, 2, 2) % 4
    np.savez(tmp_path / "levels.npz", train_levels=train, train_labels=np.arange(10), val_index=np.array([1, 7]),
             test_levels=train[:6], test_labels=np.arange(6))
    data = load_levels(tmp_path / "levels.npz", train_limit=5, test_limit=4)
    assert data.val_y.tolist() == [1, 7] and np.array_equal(data.val_x, train[[1, 7]])
    assert data.train_y.tolist() == [0, 2, 3, 4, 5]  # the first 5 training rows that are not validation rows
    assert data.test_y.tolist() == [0, 1, 2, 3] and data.train_y.dtype == np.int64
    assert len(load_levels(tmp_path / "levels.npz").train_y) == 8


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


def test_resize_shape_and_range(mnist28: Path) -> None:
    images = load_npz(mnist28)["train_images"][:20]
    resized = resize(images, 32)
    assert resized.shape == (20, 32, 32) and resized.dtype == np.uint8
    # a digit keeps bright strokes and a black border through the antialiased resize
    assert (resized.reshape(20, -1).max(axis=1) > 200).all() and (resized[:, 0, :] < 10).all()


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
