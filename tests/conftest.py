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


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow directory in which the whole smoke DAG has run (results/ and .snakemake/
    metadata), for tests that ask Snakemake what a change would rerun.

    CI runs the smoke DAG in the checkout before pytest and points RGBENCH_SMOKE_WORKDIR
    at it; without that variable the DAG runs here, in a copy (a few minutes).
    """
    import os
    import subprocess
    import sys

    from helpers import copy_workflow

    given = os.environ.get("RGBENCH_SMOKE_WORKDIR")
    if given:
        work = Path(given).resolve()
        assert (work / "results" / "tables" / "claims.csv").exists(), f"{work} holds no finished smoke run"
        return work
    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"],
                         cwd=work, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    return work
