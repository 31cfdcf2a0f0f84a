"""Shared machinery: atomic writes, metrics.json, tables, the training loop and resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rgbench.io import atomic_path, load_npz, save_npz_atomic, write_json_atomic
from rgbench.results import REQUIRED_FIELDS, aggregate_table, params_fingerprint, provenance, write_metrics
from rgbench.runtime import pick_device, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_npz_round_trip(tmp_path: Path) -> None:
    save_npz_atomic(tmp_path / "a.npz", x=np.arange(5, dtype=np.uint8))
    assert load_npz(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2, 3, 4]


def test_metrics_json_has_contract_fields_and_table_joins(tmp_path: Path) -> None:
    for seed, accuracy in [(0, 0.9), (1, 0.8)]:
        write_metrics(tmp_path / f"runs/exp/run{seed}/metrics.json", experiment="exp", run_id=f"run{seed}",
                      params={"depth": 6, "model": "MLP", "curve": [1, 2]}, seed=seed,
                      metrics={"test_accuracy": accuracy}, wall_seconds=1.5, device="cpu",
                      provenance=provenance(n_train=100, n_val=10, n_test=20, data_sha256="abc", n_params=7,
                                            epochs_run=2),
                      extra={"history": [0.1, 0.2]})
    record = json.loads((tmp_path / "runs/exp/run0/metrics.json").read_text())
    assert set(REQUIRED_FIELDS) <= set(record)
    assert set(record["versions"]) >= {"python", "torch", "snakemake", "git_commit"}
    table = aggregate_table(sorted(tmp_path.glob("runs/exp/*/metrics.json")), tmp_path / "t.csv",
                            required_columns=["depth", "test_accuracy"])
    assert table["test_accuracy"].tolist() == [0.9, 0.8]
    assert "curve" not in table.columns  # lists stay in the JSON
    assert pd.read_csv(tmp_path / "t.csv")["seed"].tolist() == [0, 1]
    # provenance becomes columns: what the run actually used
    assert table[["n_train", "n_val", "n_test", "data_sha256", "n_params", "epochs_run"]].iloc[0].tolist() == \
        [100, 10, 20, "abc", 7, 2]
    with pytest.raises(ValueError, match="missing_column"):
        aggregate_table(sorted(tmp_path.glob("runs/exp/*/metrics.json")), tmp_path / "u.csv",
                        required_columns=["missing_column"])
    assert not (tmp_path / "u.csv").exists()


def test_fingerprint_is_order_independent() -> None:
    assert params_fingerprint({"a": 1, "b": 2}) == params_fingerprint({"b": 2, "a": 1})
    assert params_fingerprint({"a": 1}) != params_fingerprint({"a": 2})


def test_device_choice() -> None:
    assert pick_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    with pytest.raises(ValueError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            pick_device("cuda")


def _problem(seed: int = 0):
    seed_everything(seed)
    x = torch.randn(64, 5)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def batches(epoch: int):
        return TensorBatches((x, y), 16, order=epoch_permutation(64, seed, epoch))

    def loss(batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    return model, optimizer, batches, loss


def test_fit_resume_is_exact(tmp_path: Path) -> None:
    model, optimizer, batches, loss = _problem()
    straight = fit(model, optimizer, batches, loss, epochs=4)
    reference = [p.detach().clone() for p in model.parameters()]

    model, optimizer, batches, loss = _problem()
    fit(model, optimizer, batches, loss, epochs=2, checkpoint_path=tmp_path / "ck.pt", fingerprint="a")
    model, optimizer, batches, loss = _problem()  # a fresh process would start like this
    resumed = fit(model, optimizer, batches, loss, epochs=4, checkpoint_path=tmp_path / "ck.pt", fingerprint="a")
    assert resumed.resumed_from_epoch == 2
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in straight.history])
    for a, b in zip(reference, model.parameters()):
        assert torch.equal(a, b)


def test_fit_counts_cpu_seconds_per_epoch_and_keeps_them_across_a_resume(tmp_path: Path) -> None:
    model, optimizer, batches, loss = _problem()

    def busy(epoch: int) -> dict:  # a known floor of CPU work in the epoch's evaluation
        started = time.process_time()
        while time.process_time() - started < 0.05:
            pass
        return {}

    first = fit(model, optimizer, batches, loss, epochs=2, checkpoint_path=tmp_path / "ck.pt", fingerprint="a",
                on_epoch_end=busy)
    assert all(entry.cpu_seconds >= 0.05 for entry in first.history)
    model, optimizer, batches, loss = _problem()
    resumed = fit(model, optimizer, batches, loss, epochs=3, checkpoint_path=tmp_path / "ck.pt", fingerprint="a",
                  on_epoch_end=busy)
    assert [h.cpu_seconds for h in resumed.history[:2]] == [h.cpu_seconds for h in first.history]
    assert resumed.train_cpu_seconds == pytest.approx(sum(h.cpu_seconds for h in resumed.history))
    assert resumed.train_cpu_seconds >= 0.15


def test_fit_ignores_a_checkpoint_of_other_parameters(tmp_path: Path) -> None:
    model, optimizer, batches, loss = _problem()
    fit(model, optimizer, batches, loss, epochs=2, checkpoint_path=tmp_path / "ck.pt", fingerprint="a")
    model, optimizer, batches, loss = _problem()
    result = fit(model, optimizer, batches, loss, epochs=2, checkpoint_path=tmp_path / "ck.pt", fingerprint="b")
    assert result.resumed_from_epoch == 0 and len(result.history) == 2


def test_fit_records_divergence_instead_of_raising() -> None:
    model, optimizer, batches, _ = _problem()
    calls = {"n": 0}

    def exploding(batch):
        calls["n"] += 1
        value = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        return value * float("nan") if calls["n"] == 3 else value

    result = fit(model, optimizer, batches, exploding, epochs=3)
    assert result.diverged
    assert len(result.history) == 1 and result.history[0].diverged
    assert math.isfinite(result.history[0].train_loss)  # mean over the finite batches
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step was not applied


def test_tensor_batches_cover_every_row_once() -> None:
    x = torch.arange(10)
    batches = TensorBatches((x,), 4, order=epoch_permutation(10, 0, 0))
    assert len(batches) == 3
    seen = torch.cat([b[0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert len(TensorBatches((x,), 4, drop_last=True)) == 2


def test_provenance_is_required_and_may_not_shadow_a_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="provenance"):
        write_metrics(tmp_path / "m.json", experiment="exp", run_id="r", params={}, seed=0, metrics={},
                      wall_seconds=1.0, device="cpu", provenance={"n_train": 1})
    write_metrics(tmp_path / "m.json", experiment="exp", run_id="r", params={"n_train": 5}, seed=0, metrics={},
                  wall_seconds=1.0, device="cpu",
                  provenance=provenance(n_train=1, n_val=0, n_test=0, data_sha256="x", n_params=None))
    with pytest.raises(ValueError, match="n_train"):
        aggregate_table([tmp_path / "m.json"], tmp_path / "t.csv")


def test_seeding_makes_torch_deterministic_without_loading_inductor() -> None:
    # In a fresh interpreter: another test may already have imported inductor here.
    code = ("import sys, torch; from rgbench.runtime import seed_everything; seed_everything(3); "
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
            "'torch._inductor.config' in sys.modules, torch.initial_seed())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False", "3"]
