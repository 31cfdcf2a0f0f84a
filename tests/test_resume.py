"""A training job killed mid-way resumes from its last checkpoint.

The pipeline runs in a throwaway copy of the workflow (symlinks to the real files, its
own .snakemake/ and results/), on the smoke preset's shipped MNIST subset:
1. an uninterrupted run of one training job;
2. the same job from scratch, SIGKILLed (Snakemake and the job, as a lost node
   would) once its first epoch's checkpoint is on disk;
3. `snakemake --rerun-incomplete`, which must resume from that checkpoint and
   reach exactly the metrics of step 1 (same seed, CPU, one thread).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
# What a copy of the workflow needs; results/ and .snakemake/ stay private to it.

# The training job under test: the reference classifier trains through the shared
# rgbench.training.fit (checkpoint after every epoch, exact resume).
EXPERIMENT = "reference_classifier"
RUN_DIR = Path("results/runs/reference_classifier/seed-0")
OVERRIDES = {"reference_classifier": {"epochs": 3, "fid_samples": 200}}
# Numbers that legitimately differ between two runs. The weights file's sha256 is compared:
# the file is serialised in memory, so identical weights give identical bytes.
TIMING_KEYS = {"train_seconds", "seconds", "wall_seconds", "train_cpu_seconds", "cpu_seconds"}


def workflow_copy(tmp_path: Path) -> Path:
    work = copy_workflow(tmp_path)
    overlay = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    for section, values in OVERRIDES.items():
        overlay[section].update(values)
    (work / "resume.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return work


def snakemake_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", str(RUN_DIR / "metrics.json"), "--cores", "1",
            "--configfile", "resume.yaml", "--config", "results_dir=results", *extra]


def run(work: Path, *extra: str) -> None:
    result = subprocess.run(snakemake_command(*extra), cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]


def comparable(record: dict) -> dict:
    """metrics.json without wall-clock numbers (and without the resume bookkeeping)."""
    history = [{k: {x: y for x, y in v.items() if x not in TIMING_KEYS} if k == "extra" else v
                for k, v in epoch.items() if k not in TIMING_KEYS} for epoch in record["extra"]["history"]]
    metrics = {k: v for k, v in record["metrics"].items() if k not in TIMING_KEYS}
    return {"params": record["params"], "seed": record["seed"], "metrics": metrics, "history": history}


def kill_after_first_checkpoint(work: Path, timeout: float = 300) -> Path:
    """Start the job, SIGKILL its whole process group once a checkpoint exists."""
    output = (work / "killed-run.log").open("w")
    process = subprocess.Popen(snakemake_command(), cwd=work, stdout=output,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            checkpoints = list((work / RUN_DIR).glob("checkpoint*.pt"))
            if checkpoints:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return checkpoints[0]
            if process.poll() is not None:
                output.flush()
                pytest.fail(f"the job ended (exit {process.returncode}) before any checkpoint appeared:\n"
                            + (work / "killed-run.log").read_text()[-4000:])
            time.sleep(0.05)
        pytest.fail(f"no checkpoint after {timeout} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output.close()


@pytest.mark.slow
def test_killed_training_job_resumes_to_the_same_metrics(tmp_path):
    work = workflow_copy(tmp_path)
    epochs = OVERRIDES[EXPERIMENT]["epochs"]

    run(work)  # builds the data, then one uninterrupted training run
    reference = json.loads((work / RUN_DIR / "metrics.json").read_text())
    assert reference["extra"]["resumed_from_epoch"] == 0
    assert len(reference["extra"]["history"]) == epochs
    assert not list((work / RUN_DIR).glob("checkpoint*.pt")), "a finished job leaves no checkpoint behind"
    reference_weights = torch.load(work / RUN_DIR / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    for path in (work / RUN_DIR).iterdir():
        path.unlink()

    checkpoint = kill_after_first_checkpoint(work)
    assert not (work / RUN_DIR / "metrics.json").exists(), "killed job left its outputs"
    done = torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= done < epochs

    # The killed Snakemake left its lock behind, as after a power loss: the documented
    # recovery is --unlock, then the same command with --rerun-incomplete.
    run(work, "--unlock")
    run(work, "--rerun-incomplete")
    resumed = json.loads((work / RUN_DIR / "metrics.json").read_text())
    assert resumed["extra"]["resumed_from_epoch"] >= done  # it did not start over
    got, want = comparable(resumed), comparable(reference)
    differ = {k: (got["metrics"].get(k), want["metrics"].get(k))
              for k in set(got["metrics"]) | set(want["metrics"]) if got["metrics"].get(k) != want["metrics"].get(k)}
    assert not differ, f"resumed vs uninterrupted: {differ}"
    assert got == want
    weights = torch.load(work / RUN_DIR / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert weights.keys() == reference_weights.keys()
    assert all(torch.equal(weights[k], reference_weights[k]) for k in weights), "weights differ after resume"
