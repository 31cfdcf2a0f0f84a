"""Shared fixtures: caches built once per session from the shipped MNIST subset."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBSET_DIR = ROOT / "tests" / "data" / "mnist-subset"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mnist_subset_dir() -> Path:
    """The shipped real MNIST subset (1,500 train, 500 test, gzip IDX + SHA256SUMS)."""
    return SUBSET_DIR


@pytest.fixture(scope="session")
def mnist_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding mnist28.npz, mnist4.npz, mnist32_rgm.npz and subsets.npz
    built from the shipped subset exactly as the pipeline builds them."""
    from rgbench.data.cache import build_discrete, build_rgm32, build_subsets
    from rgbench.data.mnist import build_cache, fetch_mnist

    out = tmp_path_factory.mktemp("mnist")
    fetch_mnist(str(SUBSET_DIR), out / "raw", checksums="manifest")
    build_cache(out / "raw", out / "mnist28.npz", val_size=100, seed=0)
    build_discrete(out / "mnist28.npz", out / "mnist4.npz", edges=(0.25, 0.5, 0.75))
    build_rgm32(out / "mnist28.npz", out / "mnist32_rgm.npz")
    build_subsets(out / "mnist28.npz", out / "subsets.npz", exemplars_per_class=13, balanced_size=200, seed=0)
    return out


@pytest.fixture(scope="session")
def mnist28(mnist_cache_dir: Path) -> Path:
    return mnist_cache_dir / "mnist28.npz"
