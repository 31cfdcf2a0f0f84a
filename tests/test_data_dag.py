"""The data stage run for real through Snakemake on the shipped subset."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--nolock", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_data_stage_builds_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    results = tmp_path / "results"
    common = ["data", "--configfile", "config/smoke.yaml", "--config", f"results_dir={results}"]
    first = snakemake(*common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert np.load(results / "data/mnist/mnist28.npz")["train_images"].shape == (1500, 28, 28)
    assert np.load(results / "data/msds/msds2.npz")["train_images"].shape == (256, 32, 32, 3)
    second = snakemake(*common)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


def test_corrupt_file_fails_the_run_naming_it_and_leaves_no_cache(mnist_subset_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "mnist"
    shutil.copytree(mnist_subset_dir, source)
    payload = bytearray(gzip.decompress((source / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    payload[100] = (payload[100] + 1) % 10
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(payload)))
    results = tmp_path / "results"
    run = snakemake("data", "--configfile", "config/smoke.yaml",
                    "--config", f"results_dir={results}", f"mnist_source={source}")
    assert run.returncode != 0
    log = (results / "logs" / "mnist_fetch.log").read_text()
    assert "t10k-labels-idx1-ubyte: SHA-256" in log
    assert "mnist_source" in log  # the fix is named
    mnist_dir = results / "data" / "mnist"
    leftovers = [p for p in mnist_dir.rglob("*") if p.is_file()] if mnist_dir.exists() else []
    assert leftovers == []
