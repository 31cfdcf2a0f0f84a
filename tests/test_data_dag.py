"""The data stage run for real through Snakemake on the shipped subset: it builds, then has
nothing to do; where MNIST comes from never reruns anything, a change of its content does;
bad data stops the run at once, naming the file, before any long job starts."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from helpers import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
# The data target without MSDS (RG-Flow off), so the stage is MNIST only and quick.
NO_RGFLOW = {"rgflow": {"enabled": False}}


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args],
                          cwd=work, capture_output=True, text=True, timeout=600)


def jobs_planned(result: subprocess.CompletedProcess) -> set[str]:
    """Rule names of the jobs a dry run lists (empty when there is nothing to do)."""
    from test_smoke_run import job_stats

    return job_stats(result.stdout)


def corrupt(source: Path, name: str, rewrite_manifest: bool) -> None:
    """Flip one label in ``name`` (gzip) and, optionally, make SHA256SUMS agree with it."""
    path = source / f"{name}.gz"
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[100] = (payload[100] + 1) % 10
    path.write_bytes(gzip.compress(bytes(payload)))
    if rewrite_manifest:
        sums = source / "SHA256SUMS"
        lines = [line for line in sums.read_text().splitlines() if not line.endswith(name + ".gz")
                 and not line.endswith(name)]
        lines.append(f"{hashlib.sha256(bytes(payload)).hexdigest()}  {name}.gz")
        sums.write_text("\n".join(lines) + "\n")


def test_data_stage_builds_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    (work / "fast.yaml").write_text(yaml.safe_dump(NO_RGFLOW))
    common = ["data", "--configfile", "config/smoke.yaml", "fast.yaml"]
    first = snakemake(work, *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert np.load(work / "results/data/mnist/mnist28.npz")["train_images"].shape == (1500, 28, 28)
    second = snakemake(work, *common)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


def test_mnist_source_is_a_locator_and_its_content_decides(mnist_subset_dir: Path, tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    (work / "fast.yaml").write_text(yaml.safe_dump(NO_RGFLOW))
    shutil.copytree(mnist_subset_dir, work / "mnist-a")
    common = ["data", "--configfile", "config/smoke.yaml", "fast.yaml"]
    built = snakemake(work, *common, "--config", "mnist_source=mnist-a")
    assert built.returncode == 0, built.stderr[-3000:]
    # the same files named by an absolute path, or copied elsewhere: nothing to do
    shutil.copytree(mnist_subset_dir, tmp_path / "elsewhere")
    for source in (work / "mnist-a", tmp_path / "elsewhere"):
        same = snakemake(work, "-n", *common, "--config", f"mnist_source={source}")
        assert same.returncode == 0, same.stderr[-3000:]
        assert jobs_planned(same) == set(), same.stdout[-2000:]
    # other content (one label changed, its manifest updated): the fetch and all after it rerun
    shutil.copytree(mnist_subset_dir, tmp_path / "changed")
    corrupt(tmp_path / "changed", "t10k-labels-idx1-ubyte", rewrite_manifest=True)
    changed = snakemake(work, "-n", *common, "--config", f"mnist_source={tmp_path / 'changed'}")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert {"mnist_fetch", "mnist_cache"} <= jobs_planned(changed)


def test_a_wrong_source_stops_the_run_before_any_job(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    missing = snakemake(work, "-n", "--configfile", "config/smoke.yaml", "--config", f"mnist_source={tmp_path}/nope")
    assert missing.returncode != 0
    said = missing.stdout + missing.stderr
    assert "neither 'download' nor an existing directory" in said and "mnist_source" in said
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train-images-idx3-ubyte.gz").write_bytes(b"")
    result = snakemake(work, "-n", "--configfile", "config/smoke.yaml", "--config", f"mnist_source={partial}")
    assert result.returncode != 0 and "train-labels-idx1-ubyte[.gz]: missing" in result.stdout + result.stderr


def test_a_corrupt_file_stops_the_run_before_any_job_naming_it(mnist_subset_dir: Path, tmp_path: Path) -> None:
    """The whole smoke DAG with one corrupt file: the DAG is not even built; the message
    names the file and the fix; nothing is written under results/."""
    work = copy_workflow(tmp_path)
    source = tmp_path / "mnist"
    shutil.copytree(mnist_subset_dir, source)
    corrupt(source, "t10k-labels-idx1-ubyte", rewrite_manifest=False)
    run = snakemake(work, "--configfile", "config/smoke.yaml", "--config", f"mnist_source={source}")
    assert run.returncode != 0
    said = run.stdout + run.stderr
    assert "t10k-labels-idx1-ubyte: SHA-256" in said
    assert "mnist_source" in said  # the fix is named
    assert not (work / "results").exists() or not any(p.is_file() for p in (work / "results").rglob("*"))
