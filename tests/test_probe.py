"""The paper preset's probe: gradient accumulation and the probe inside the shared training
loop, the PCD trainers' probe and resume, the probed Potts/RBM, RGM and sampler-benchmark
jobs (their cuts, records and provenance), and the paper cost table built from records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rgbench.probe import Probe, capped, measured, probe_record_path, probe_steps, split_probe
from rgbench.training import TensorBatches, accumulate_gradients, fit, load_checkpoint, micro_batches
from helpers import level_files


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def tiny_data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def one_step(micro_batch_size: int | None, batch_size: int = 48) -> nn.Module:
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    x, y = tiny_data(batch_size)
    fit(model, optimizer, lambda epoch: [(x, y)], lambda b: nn.functional.cross_entropy(model(b[0]), b[1]), epochs=1,
        grad_clip=1.0, micro_batch_size=micro_batch_size)
    return model


@pytest.mark.parametrize("micro", [1, 7, 16, 47])
def test_accumulated_step_equals_the_whole_batch_step(micro):
    whole, pieces = one_step(None), one_step(micro)
    for a, b in zip(whole.parameters(), pieces.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the step moved the parameters (the comparison is not between two untouched models)
    assert not torch.allclose(next(whole.parameters()), next(tiny_model().parameters()))


def test_accumulation_returns_the_batch_loss_and_stops_on_nan():
    model = tiny_model()
    x, y = tiny_data(10)

    def loss_fn(batch):
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    whole = float(loss_fn((x, y)).detach())
    assert accumulate_gradients((x, y), loss_fn, 3) == pytest.approx(whole, abs=1e-6)
    model.zero_grad()
    calls = []

    def nan_in_second(batch):
        calls.append(len(batch))
        return torch.tensor(float("nan"), requires_grad=True) if len(calls) == 2 else model(batch).sum() * 0

    assert math.isnan(accumulate_gradients(x, nan_in_second, 4))
    assert calls == [4, 4]  # the third piece is never computed


def test_micro_batches_split_tensors_and_tuples():
    x, y = tiny_data(10)
    assert [len(p) for p in micro_batches(x, 4)] == [4, 4, 2]
    pieces = micro_batches((x, y), 4)
    assert isinstance(pieces[0], tuple) and torch.equal(torch.cat([p[1] for p in pieces]), y)
    with pytest.raises(TypeError):
        accumulate_gradients({"x": x}, lambda b: x.sum(), 4)


def make_probe(**overrides) -> Probe:
    spec = {"steps": 2, "eval_batches": 2, "max_micro_batch": None, "rule": "demo_train", "family": "train",
            "benchmark": "results/benchmarks/demo.tsv", "represents": 3, **overrides}
    return Probe(**spec)


def train_tiny(tmp_path, probe: Probe | None, epochs: int = 5):
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = tiny_data(64)
    seen = []

    def on_epoch_end(epoch: int) -> dict:
        n = capped(probe, len(x), 8)
        seen.append(n)
        return {"val": float(nn.functional.cross_entropy(model(x[:n]), y[:n]).detach())}

    result = fit(model, optimizer, lambda epoch: TensorBatches((x, y), 8), lambda b: nn.functional.cross_entropy(
        model(b[0]), b[1]), epochs, checkpoint_path=tmp_path / "checkpoint.pt", on_epoch_end=on_epoch_end,
        fingerprint="f", probe=probe)
    return result, seen


def test_probe_takes_its_steps_checkpoints_resumes_and_measures(tmp_path):
    probe = make_probe(steps=3)
    result, seen = train_tiny(tmp_path, probe)
    assert result.steps_run == 3 and len(result.history) == 2  # 2 steps, checkpoint + resume, 1 step
    assert seen == [16, 16]  # validation cut to 2 batches of 8
    (record,) = probe.fits
    assert record["resumed"] and record["steps_run"] == 3 and record["epochs_run"] == 2
    assert record["steps_planned"] == 5 * 8 and record["batch_size"] == 8
    assert len(record["step_seconds"]) == 2  # the first (counted) step is not timed
    # two Linear layers, 2 FLOPs per multiply-add: forward and weight gradients of both,
    # the input gradient of the second only (the first one's input needs none)
    assert record["flops_per_step"] == 2 * 8 * (2 * (6 * 16 + 16 * 3) + 16 * 3)
    assert record["ops_per_step"] > 10 and record["peak_host_mb"] > 0
    block = probe.blocks["epoch_end"]
    assert block["calls"] == 2 and block["scale"] == pytest.approx(64 / 16) and block["flops"] > 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2

    path = probe_record_path(tmp_path, probe)
    probe.write(path, device="cpu")
    written = json.loads(path.read_text())
    assert path.name == "probe_demo_train.json"
    assert written["represents"] == 3 and written["device"] == "cpu" and written["fits"][0]["steps_run"] == 3


def test_without_a_probe_nothing_is_cut_or_measured(tmp_path):
    result, seen = train_tiny(tmp_path, None, epochs=2)
    assert result.steps_run == 16 and len(result.history) == 2 and seen == [64, 64]
    with measured(None, "evaluate"):
        pass


def test_a_probe_counts_the_work_of_the_real_runs_micro_batches(tmp_path):
    """The probe may run smaller pieces than configured (its machine's memory); FLOPs are
    the batch's either way, dispatched operations those of the configured pieces."""
    records = []
    for micro, cap in ((None, None), (4, None), (4, 2)):
        probe = make_probe(max_micro_batch=cap)
        model = tiny_model()
        x, y = tiny_data(8)
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda epoch: [(x, y)] * 3,
            lambda b: nn.functional.cross_entropy(model(b[0]), b[1]), epochs=2, micro_batch_size=micro, probe=probe)
        records.append(probe.fits[0])
    whole, pieces, capped_pieces = records
    assert whole["flops_per_step"] == pieces["flops_per_step"] == capped_pieces["flops_per_step"]
    assert capped_pieces["probe_micro_batch_size"] == 2 and capped_pieces["piece_samples"] == 2
    for record in (pieces, capped_pieces):  # two pieces of 4 in the real run
        assert record["ops_per_step"] == 2 * record["ops_per_piece"] + record["ops_rest"]
    assert whole["ops_per_step"] == whole["ops_per_piece"] + whole["ops_rest"]


def test_a_one_epoch_probe_takes_every_step_in_it(tmp_path):
    probe = make_probe(steps=2)
    result, _ = train_tiny(tmp_path, probe, epochs=1)
    assert result.steps_run == 2 and len(result.history) == 1 and not probe.fits[0]["resumed"]


def test_split_probe_and_measured_blocks():
    config, probe = split_probe({"lr": 0.1, "probe": {"steps": 2, "eval_batches": 1, "rule": "r", "family": "train",
                                                      "benchmark": "b", "represents": 1}})
    assert config == {"lr": 0.1} and probe.eval_batches == 1
    assert split_probe({"lr": 0.1}) == ({"lr": 0.1}, None)
    with probe.measure("evaluate"):
        assert probe.cap(1000, 100) == 100
        assert probe.cap(50, 100) == 50
        torch.ones(4, 4) @ torch.ones(4, 4)
    assert probe.blocks["evaluate"]["scale"] == 10 and probe.blocks["evaluate"]["flops"] == 2 * 4 * 4 * 4
    with pytest.raises(ValueError):
        make_probe(steps=0)


# --- the paper cost table, from hand-made probe records -------------------------------------

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
GPU = {"name": "Test GPU", "peak_tflops": 10.0, "utilisation": 0.5, "launch_us": 10.0}
MARGINS = {"runtime": 2.0, "mem_mb": 1.5}


def hand_made_probe(results, rule="demo_train", run="seed-0", family="train", wall=100.0, rss=1000.0,
                    cpu_bound=False):
    """A job that took 2 probe steps of a 1,000-step run (10 s each, 1e12 FLOPs, 1,000 operations),
    2 validations (4 s each, cut 5x) over 10 epochs, and a test block (6 s, cut 10x)."""
    bench = results / "benchmarks" / rule / f"{run}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(BENCH_HEADER + f"{wall}\t0:01:40\t{rss}\t0\t0\t0\t0\t0\t0\t{wall / 2}\n")
    probe = make_probe(rule=rule, family=family, benchmark=str(bench), represents=3)
    probe.fits.append({"description": "demo", "batch_size": 64, "micro_batch_size": 16, "epochs_planned": 10,
                       "batches_per_epoch": 100, "steps_planned": 1000, "epochs_run": 2, "steps_run": 2,
                       "step_seconds": [10.0], "first_step_seconds": 12.0, "flops_per_step": 1e12,
                       "ops_per_step": 1000.0, "host_mb_per_sample": 50.0, "peak_host_mb": 1200.0, "param_mb": 10.0,
                       "peak_device_mb": None, "resumed": True, "diverged": False})
    probe.blocks["epoch_end"] = {"seconds": 8.0, "flops": 2e11, "ops": 100.0, "calls": 2, "scale": 5.0}
    probe.blocks["test"] = {"seconds": 6.0, "flops": 1e11, "ops": 50.0, "calls": 1, "scale": 10.0}
    probe.write(probe_record_path(results / "runs" / "demo" / run, probe), device="cpu", n_params=1234,
                **({"cpu_bound": True} if cpu_bound else {}))
    return bench


def test_paper_cost_scales_steps_and_blocks_to_the_real_run(tmp_path):
    from rgbench.summary.paper_cost import paper_cost_table

    results = tmp_path / "results"
    hand_made_probe(results)
    resources = {"train": {"runtime": 5, "mem_mb": 2000, "gpu": 1}}
    table = paper_cost_table(results, resources, GPU, MARGINS, {"demo_train": "demo"})
    (row,) = table.to_dict("records")
    # measured: 12 + 10 s of steps, 8 s of validation, 6 s of test; the other 64 s are overhead;
    # a step takes 10 s (the timed one: the first, 12 s, also paid for counting)
    overhead = 100 - (22 + 8 + 6)
    here = overhead + 1000 * 10 + 10 * (8 / 2) * 5 + 6 * 10
    assert row["hours_here"] == pytest.approx(here / 3600, rel=1e-3)
    assert row["cpu_hours"] == pytest.approx(here / 2 / 3600, rel=1e-3)  # the job used half a CPU per second
    flops = 1000 * 1e12 + 10 * (2e11 / 2) * 5 + 1e11 * 10
    ops = 1000 * 1000 + 10 * (100 / 2) * 5 + 50 * 10
    gpu_seconds = overhead + flops / (10e12 * 0.5) + ops * 10e-6
    assert row["gpu_hours"] == pytest.approx(gpu_seconds / 3600, rel=1e-3)
    assert row["steps_full"] == 1000 and row["step_s"] == 10.0 and row["represents"] == 3
    assert row["peak_host_mb"] == 1200.0 and row["micro_batch_size"] == 16 and row["estimate"] == "probe"
    assert row["device_mb_est"] == 4 * 10.0 + 50.0 * 16  # state, and one micro-batch's activations
    # 5 min < 2 x the GPU estimate (~4.6 min): the runtime check fails; 2000 MB > 1.5 x 1200 MB passes
    assert row["runtime_ok"] is False and row["mem_ok"] is True and row["runtime_min"] == 5


def test_paper_cost_lists_data_jobs_as_measured_and_unprobed_jobs_apart(tmp_path):
    from rgbench.summary.paper_cost import paper_cost_sentence, paper_totals, write_paper_cost

    results = tmp_path / "results"
    hand_made_probe(results)
    for rule, wall in (("mnist_cache", 3.0), ("potts_ebm_train", 50.0), ("demo_figures", 2.0)):
        path = results / "benchmarks" / f"{rule}.tsv"
        path.write_text(BENCH_HEADER + f"{wall}\t0:00:03\t100\t0\t0\t0\t0\t0\t0\t{wall}\n")
    resources = {"train": {"runtime": 100000, "mem_mb": 2000, "gpu": 1}, "data": {"runtime": 30, "mem_mb": 4000},
                 "report": {"runtime": 30, "mem_mb": 2000}}
    stages = {"demo_train": "demo", "mnist_cache": "data", "potts_ebm_train": "potts_ebm", "demo_figures": "demo"}
    table = write_paper_cost(results, tmp_path / "paper_cost.csv", resources, GPU, MARGINS, stages,
                             report_rules=["demo_figures"])
    kinds = dict(zip(table["rule"], table["estimate"]))
    assert kinds == {"demo_train": "probe", "mnist_cache": "measured", "potts_ebm_train": "not_probed",
                     "demo_figures": "report"}
    data = table[table["rule"] == "mnist_cache"].iloc[0]
    assert data["hours_here"] == pytest.approx(3 / 3600) and data["runtime_ok"] and data["mem_ok"]
    totals = paper_totals(table)
    probed = table[table["rule"] == "demo_train"].iloc[0]
    assert totals["gpu_hours"] == pytest.approx(3 * probed["gpu_hours"])  # it stands for 3 jobs
    assert totals["longest_job"] == "demo_train/seed-0" and totals["not_probed"] == ["potts_ebm_train"]
    assert totals["requests_short"] == [] and totals["paper_jobs"] == 4
    sentence = paper_cost_sentence(totals)
    assert "GPU-hours on an Test GPU" in sentence and "potts_ebm_train" in sentence
    assert (tmp_path / "paper_cost.csv").read_text().startswith("experiment,rule,job,family,estimate")


def test_a_probe_page_shows_the_paper_preset_cost_and_other_pages_do_not(tmp_path):
    import pandas as pd

    from rgbench.summary.paper_cost import COLUMNS
    from rgbench.summary.summary import build_summary_page

    rows = [{"experiment": "rgflow", "rule": "rgflow_train", "job": "dataset-msds1_prior-laplace", "family": "train",
             "estimate": "probe", "represents": 4, "gpu": "Test GPU", "gpu_hours": 11.4, "hours_here": 297.0,
             "cpu_hours": 540.0, "peak_host_mb": 6688.0, "runtime_ok": True, "mem_ok": True},
            {"experiment": "potts_ebm", "rule": "potts_ebm_train", "job": "model-rbm_seed-0", "estimate": "not_probed",
             "represents": 1}]
    csv = tmp_path / "paper_cost.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(csv, index=False)
    common = {"results_dir": tmp_path / "nowhere", "experiments": {}, "repo_root": tmp_path}
    build_summary_page(tmp_path / "probe.html", paper_cost_csv=csv, **common)
    text = (tmp_path / "probe.html").read_text()
    section = text[text.index('id="paper-cost"'):]
    assert "about 45.6 GPU-hours on an Test GPU" in section and "rgflow_train/dataset-msds1_prior-laplace" in section
    assert "Not estimated (their loops do not honour the probe): potts_ebm_train." in section
    assert "<table" in section and "hours_here" in section
    build_summary_page(tmp_path / "plain.html", **common)
    assert 'id="paper-cost"' not in (tmp_path / "plain.html").read_text()


def test_cpu_probe_family_and_cpu_bound_jobs_hold_gpu_hours_as_their_families_do(tmp_path):
    """A probed job of a family that asks for no GPU has no GPU-hours (its hours are the
    probe machine's, checked against its runtime); a ``cpu_bound`` job of a GPU family holds
    its GPU for those hours; the totals add the CPU jobs apart."""
    from rgbench.summary.paper_cost import paper_cost_sentence, paper_totals, paper_cost_table

    results = tmp_path / "results"
    hand_made_probe(results, rule="demo_train", run="seed-0", family="train")
    hand_made_probe(results, rule="pcd_train", run="seed-0", family="cpu", cpu_bound=True)
    hand_made_probe(results, rule="pcd_evaluate", run="seed-0", family="evaluate", cpu_bound=True)
    resources = {"train": {"runtime": 100000, "mem_mb": 2000, "gpu": 1},
                 "evaluate": {"runtime": 100000, "mem_mb": 2000, "gpu": 1},
                 "cpu": {"runtime": 600, "mem_mb": 2000}}
    table = paper_cost_table(results, resources, GPU, MARGINS).set_index("rule")
    gpu_job, cpu_job, bound = table.loc["demo_train"], table.loc["pcd_train"], table.loc["pcd_evaluate"]
    assert gpu_job["gpu_hours"] < gpu_job["hours_here"]  # the GPU at its FLOP rate beats the 2-core CPU
    assert math.isnan(cpu_job["gpu_hours"]) and "a CPU job" in cpu_job["note"]
    assert bound["gpu_hours"] == pytest.approx(bound["hours_here"]) and "on the CPU" in bound["note"]
    # the CPU job's ~2.8 h here need 2 x 2.8 h = 5.6 h of runtime: 600 min is 10 h
    assert cpu_job["runtime_ok"] == bool(600 >= 2 * cpu_job["hours_here"] * 60) and cpu_job["gpus"] == 0
    totals = paper_totals(table.reset_index())
    assert totals["gpu_hours"] == pytest.approx(3 * (gpu_job["gpu_hours"] + bound["gpu_hours"]))
    assert totals["cpu_job_hours"] == pytest.approx(3 * cpu_job["hours_here"])
    assert totals["longest_cpu_job"] == "pcd_train/seed-0"
    assert "Jobs that hold no GPU add" in paper_cost_sentence(totals)


# --- the probe's own pieces ---------------------------------------------------------------


def test_epoch_plan_caps_timed_steps_cuts_and_blocks():
    probe = make_probe(steps=5, eval_batches=2)
    assert probe.epoch_plan(0, 10) == {0: 3, 1: 2} and probe.epoch_plan(9, 10) == {9: 5} and probe.epoch_plan(3, 3) == {}
    assert probe_steps(probe, 100) == 5 and probe_steps(probe, 3) == 3 and probe_steps(None, 100) == 100
    assert capped(None, 30, 1, minimum=4) == 30
    with probe.measure("iat", count=False):
        # a series estimator needs 4 steps although 2 batches of one would do
        assert probe.cap(30, 1, minimum=4) == 4
        torch.ones(8, 8) @ torch.ones(8, 8)
    assert probe.blocks["iat"]["scale"] == 7.5 and probe.blocks["iat"]["flops"] == 0  # not counted
    probe.cut(1000, 10)  # no block open: nothing to record on
    assert set(probe.blocks) == {"iat"}
    probe.add_block("sampling", 3.0, 99, 1)
    probe.add_block("sampling", 1.0, 10, 1)
    assert probe.blocks["sampling"] == {"seconds": 4.0, "flops": 0.0, "ops": 0.0, "calls": 2, "scale": 99.0}
    seen = list(probe.timed_steps(range(3), "stream", steps_planned=40))
    (entry,) = probe.fits
    assert seen == [0, 1, 2] and entry["steps_run"] == 3 and entry["steps_planned"] == 40
    assert len(entry["step_seconds"]) == 2 and entry["first_step_seconds"] >= 0 and entry["batch_size"] == 1


# --- PCD: the probe and a real resume --------------------------------------------------------


def pcd_data(n_train: int = 40, n_val: int = 600, side: int = 6, seed: int = 0):
    """Level images with a bright bar whose row is the digit (side x side), a label each."""
    from rgbench.data.preprocess import LevelData

    rng = np.random.default_rng(seed)
    n = n_train + n_val + 20
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 2, (n, side, side)).astype(np.uint8)
    images[np.arange(n), labels % side, :] = 3
    parts = np.split(np.arange(n), [n_train, n_train + n_val])
    return LevelData(*[a for rows in parts for a in (images[rows], labels[rows].astype(np.int64))])


def pcd_config(model: str, **changes):
    """The default training block of ``model``, small: 2 updates per epoch of pcd_data, 3 epochs."""
    from rgbench.config import build, default_config
    from rgbench.models.pcd import LatticeTrainConfig, RBMTrainConfig

    section = default_config()["potts_ebm"]
    if model.startswith("rbm"):
        spec = {**section["rbm"], "hidden": 8, "epochs": 3, "batch_size": 20, "chains": 20, "val_images": 600,
                "fast_lr": {"rbm": 0.05, "rbm_cond": 0.05}, **changes}
        return build(RBMTrainConfig, spec)
    return build(LatticeTrainConfig, {**section["pcd"], "epochs": 3, "batch_size": 20, "chains": 20,
                                      "val_images": 600, **changes})


def train_pcd(model: str, data, checkpoint, probe: Probe | None = None, **changes):
    from rgbench.models.pcd import train_lattice, train_rbm
    from rgbench.models.potts import IndependentModel
    from rgbench.runtime import seed_everything

    seed_everything(7)  # as the train job does: the lattice sweeps draw their seeds from the global RNG
    independent = IndependentModel.fit(data.train_x)
    class_independent = IndependentModel.fit(data.train_x, data.train_y, classes=10)
    cfg = pcd_config(model, **changes)
    if model.startswith("rbm"):
        return train_rbm(cfg, model == "rbm_cond", data, independent, 7, checkpoint, model, probe)
    return train_lattice(cfg, model == "potts_cond", data, independent, class_independent, 7, checkpoint, model, probe)


class Killed(Exception):
    pass


def killed_at(monkeypatch, model: str, update: int) -> None:
    """The trainer of ``model`` raises (the job is killed) at its ``update``-th PCD update."""
    from rgbench.models.pcd import LatticePCDTrainer, RBMPCDTrainer

    trainer = RBMPCDTrainer if model.startswith("rbm") else LatticePCDTrainer
    real, calls = trainer.loss, []

    def loss(self, batch):
        calls.append(1)
        if len(calls) == update:
            monkeypatch.setattr(trainer, "loss", real)  # the rerun is a fresh, healthy process
            raise Killed
        return real(self, batch)

    monkeypatch.setattr(trainer, "loss", loss)


def assert_same_state(a, b, path: str = "") -> None:
    """Two checkpoint entries (state dicts, optimiser and RNG states) hold equal values."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            assert_same_state(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}/{i}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


TRAINER_STATE = ("model", "optimizer", "scheduler", "rng", "epoch")


@pytest.mark.parametrize("model", ["rbm", "rbm_cond", "potts"])
def test_pcd_killed_mid_run_resumes_to_the_uninterrupted_state(tmp_path, monkeypatch, model):
    """Killed in epoch 3, rerun: the run resumes from epoch 2's checkpoint and ends where the
    uninterrupted run ends: weights, persistent chains, fast weights, the RBM's sampling
    generator, the optimiser and the learning-rate schedule."""
    data = pcd_data()
    uninterrupted = tmp_path / "whole.pt"
    whole = train_pcd(model, data, uninterrupted)
    assert whole[1].steps_run == 6
    resumed_path = tmp_path / "killed.pt"
    killed_at(monkeypatch, model, update=5)  # the first update of epoch 3
    with pytest.raises(Killed):
        train_pcd(model, data, resumed_path)
    assert load_checkpoint(resumed_path)["epoch"] == 2
    resumed = train_pcd(model, data, resumed_path)
    assert resumed[1].resumed_from_epoch == 2 and resumed[1].steps_run == 2
    a, b = load_checkpoint(uninterrupted), load_checkpoint(resumed_path)
    for key in TRAINER_STATE:
        assert_same_state(a[key], b[key], key)
    if model.startswith("rbm"):
        assert "_extra_state" in a["model"]  # the generator travels with the trainer
    for p, q in zip(whole[0].parameters(), resumed[0].parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(whole[3][-1], resumed[3][-1])  # the chains shown after the last epoch


@pytest.mark.parametrize("model", ["rbm", "potts"])
def test_pcd_probe_takes_its_steps_and_checkpoints_the_uninterrupted_runs_state(tmp_path, monkeypatch, model):
    """A probe of 4 steps (2 per epoch of a 3-epoch run, checkpoint and resume between) at
    the real chain count ends in exactly the state the real run checkpoints after its
    second epoch; the validation keeps one batch; a real run never resumes from it."""
    from rgbench.models.pcd import PLL_BATCH

    data = pcd_data()
    probe = make_probe(steps=4, eval_batches=1, family="cpu", rule="potts_ebm_train")
    _, result, history, samples, gaps = train_pcd(model, data, tmp_path / "probe.pt", probe)
    assert result.steps_run == 4 and len(gaps) == 4 and len(history) == 2 and samples.shape[0] == 2
    (fit_entry,) = probe.fits
    assert fit_entry["resumed"] and fit_entry["steps_run"] == 4 and fit_entry["steps_planned"] == 6
    assert fit_entry["epochs_planned"] == 3 and fit_entry["epochs_run"] == 2 and fit_entry["batch_size"] == 20
    assert len(fit_entry["step_seconds"]) == 3 and fit_entry["peak_host_mb"] > 0
    if model == "rbm":  # its statistics are torch operations; the lattice's sweeps are numba's
        assert fit_entry["flops_per_step"] > 0
    epoch_end = probe.blocks["epoch_end"]
    assert epoch_end["calls"] == 2 and epoch_end["scale"] == pytest.approx(600 / PLL_BATCH)

    killed_at(monkeypatch, model, update=5)
    with pytest.raises(Killed):
        train_pcd(model, data, tmp_path / "real.pt")
    probed, real = load_checkpoint(tmp_path / "probe.pt"), load_checkpoint(tmp_path / "real.pt")
    assert real["epoch"] == probed["epoch"] == 2
    for key in TRAINER_STATE:
        assert_same_state(probed[key], real[key], key)
    assert probed["fingerprint"] != real["fingerprint"]
    # the probe's checkpoint belongs to a probe: a real run with that path starts over
    assert train_pcd(model, data, tmp_path / "probe.pt")[1].resumed_from_epoch == 0


# --- the Potts/RBM jobs under a probe ----------------------------------------------------------


def probe_block(rule: str, family: str, benchmark: str = "bench.tsv", steps: int = 2, eval_batches: int = 2,
                represents: int = 1) -> dict:
    """A hand-off's probe block as workflow/rules/common.smk's probe_handoff writes it."""
    return {"probe": {"steps": steps, "eval_batches": eval_batches, "max_micro_batch": None, "rule": rule,
                      "family": family, "benchmark": benchmark, "represents": represents}}


def test_potts_jobs_under_a_probe_cut_every_loop_and_say_so(tmp_path, monkeypatch):
    from rgbench.config import default_config
    from rgbench.experiments import potts_ebm
    from rgbench.io import load_npz

    monkeypatch.setattr(potts_ebm, "PLL_BATCH", 10)  # 40 test images: 4 batches, of which the probe keeps 2
    mnist4, reference, stats = level_files(tmp_path)
    section = default_config()["potts_ebm"]
    rbm = {**section["rbm"], "hidden": 8, "epochs": 3, "batch_size": 20, "chains": 20, "val_images": 20}
    run = {"model": "rbm", "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0, "training": rbm}
    train_dir = tmp_path / "model-rbm_seed-0"
    payload = potts_ebm.train_job({**run, **probe_block("potts_ebm_train", "cpu", represents=3)}, str(mnist4),
                                  str(train_dir / "model.pt"), str(train_dir / "epochs.npz"), device="cpu")
    assert payload["probe"] and payload["steps_run"] == 2 and len(payload["history"]) == 2
    trained = json.loads((train_dir / "probe_potts_ebm_train.json").read_text())
    assert trained["represents"] == 3 and trained["cpu_bound"] and trained["family"] == "cpu"
    assert trained["fits"][0]["steps_planned"] == 3 * (100 // 20) and trained["fits"][0]["resumed"]

    dbn_only = ("dbn_sample_sweeps", "long_sweeps_factor")  # the workflow hands these to the DBN runs alone
    analysis = {**{k: v for k, v in section["analysis"].items() if k not in dbn_only}, "seed": 0, "ais_chains": 8, "ais_steps": 30, "raise_images": 10,
                "raise_steps": 20, "samples": 24, "sample_sweeps": 10, "checkpoints": [1, 2, 5, 10],
                "ceiling_images": 40, "pll_images": 40, "iat_chains": 4, "iat_sweeps": 12}
    out = tmp_path / "evaluated"
    potts_ebm.evaluate_job(run, {**analysis, **probe_block("potts_ebm_evaluate", "evaluate")}, str(mnist4),
                           str(train_dir / "model.pt"), str(reference), str(stats), str(out / "metrics.json"),
                           str(out / "samples.npz"), run_id="model-rbm_seed-0", device="cpu")
    record = json.loads((out / "probe_potts_ebm_evaluate.json").read_text())
    cuts = {name: block["scale"] for name, block in record["blocks"].items()}
    # annealing steps 30 (AIS), 15 (its check), 20 (RAISE) and 10 sweeps: 2 of each; 4 checkpoints
    # scored of which the 2 sweeps reach 2; 2 of 4 PLL batches; 4 steps of a 12-step series; 20 of the
    # 24 samples in memorisation's 2 batches of 10
    assert cuts == {"ais": 15.0, "ais_check": 7.5, "raise": 10.0, "sampling": 5.0, "pll": 2.0, "iat": 3.0,
                    "scoring": 2.0, "ceiling": 1.0, "memorisation": 1.2}
    assert record["cpu_bound"] and record["rule"] == "potts_ebm_evaluate" and record["fits"] == []
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["probe"] is True and metrics["provenance"]["steps_run"] == 2
    assert metrics["metrics"]["n_samples"] == 24  # every chain
    assert load_npz(out / "samples.npz")["checkpoints"].tolist() == [1, 2]

    # a real evaluation of the probe's model is still a probe's: no claim may use it
    real = tmp_path / "real"
    potts_ebm.evaluate_job(run, {**analysis, "ais_steps": 4, "raise_steps": 4, "iat_sweeps": 8}, str(mnist4),
                           str(train_dir / "model.pt"), str(reference), str(stats), str(real / "metrics.json"),
                           str(real / "samples.npz"), run_id="model-rbm_seed-0", device="cpu")
    assert json.loads((real / "metrics.json").read_text())["provenance"]["probe"] is True
    assert not list(real.glob("probe_*.json"))
    assert load_npz(real / "samples.npz")["checkpoints"].tolist() == [1, 2, 5, 10]


# --- the RGM jobs under a probe --------------------------------------------------------------


def test_rgm_jobs_under_a_probe_learn_its_steps_and_classify_its_batches(tmp_path, repo_root):
    from test_rgm import small_hand_off, workflow_hand_offs

    from rgbench.data.preprocess import ordinal_ranks
    from rgbench.experiments.rgm import ablation_job, evaluate_job, train_job
    from rgbench.io import save_npz_atomic

    rng = np.random.default_rng(0)
    train_labels, test_labels = np.arange(120) % 10, np.arange(20) % 10

    def images(labels):
        raw = rng.random((len(labels), 16, 16))
        raw[np.arange(len(labels)), labels] += 2.0
        return ordinal_ranks(raw)

    cache = tmp_path / "mnist32_rgm.npz"
    save_npz_atomic(cache, train_rgm=images(train_labels), train_labels=train_labels, test_rgm=images(test_labels),
                    test_labels=test_labels, val_index=np.arange(90, 120))
    smk = workflow_hand_offs(repo_root, None)
    fit_dir = tmp_path / "model_official_test"
    fit_dir.mkdir()
    summary = train_job({**small_hand_off(smk["RGM_FIT"]["official_test"]), **probe_block("rgm_train", "cpu", steps=3)},
                        str(cache), fit_dir)
    assert summary["stream_size"] == 3 and summary["fit_images"] == 60 and summary["probe"]  # the SVD at full size
    trained = json.loads((fit_dir / "probe_rgm_train.json").read_text())
    (stream,) = trained["fits"]
    assert stream["steps_planned"] == 60 and stream["steps_run"] == 3 and len(stream["step_seconds"]) == 2
    assert trained["blocks"]["encode_stream"]["scale"] == 20.0 and trained["cpu_bound"]

    hand_off = small_hand_off(smk["RGM_EVALUATION"]["stream"])
    hand_off["inference"] = {**hand_off["inference"], "batch": 16}
    out = tmp_path / "stream"
    out.mkdir()
    evaluate_job({**hand_off, **probe_block("rgm_evaluate", "cpu", eval_batches=1)}, str(cache),
                 str(fit_dir / "model.npz"), str(fit_dir / "fit.json"), str(fit_dir / "stream.npz"),
                 str(out / "metrics.json"), str(out / "scores.npz"))
    record = json.loads((out / "probe_rgm_evaluate.json").read_text())
    assert record["blocks"]["classify"]["scale"] == 60 / 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["probe"] is True and metrics["provenance"]["n_test"] == 16

    ablation = small_hand_off(smk["RGM_ABLATION"]["full"])
    ablation["inference"] = {**ablation["inference"], "batch": 4}
    out = tmp_path / "ablation"
    ablation_job({**ablation, **probe_block("rgm_ablation", "cpu", steps=2, eval_batches=1)}, "unused-mnist28",
                 str(cache), str(out / "metrics.json"))
    record = json.loads((out / "probe_rgm_ablation.json").read_text())
    assert record["fits"][0]["steps_planned"] == 60 and record["fits"][0]["steps_run"] == 2
    assert record["blocks"]["validate"]["scale"] == 10 / 4
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    assert provenance == {**provenance, "probe": True, "n_train": 2, "n_val": 4, "svd_fit_images": 60}


# --- the sampler benchmark under a probe ---------------------------------------------------------


class FakeClock:
    """perf_counter and process_time of a machine on which a sweep takes 2 ms exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[int] = []

    def perf_counter(self) -> float:
        return self.now

    process_time = perf_counter

    def run(self, sweeps: int) -> None:
        self.calls.append(sweeps)
        self.now += 0.002 * sweeps


def test_timed_runs_calibrate_and_a_probe_scales_its_unit_runs_to_them(monkeypatch):
    from rgbench.experiments import sampler_bench

    clock = FakeClock()
    monkeypatch.setattr(sampler_bench, "time", clock)
    # the real run: a 1-sweep trial, a 10-sweep trial (0.02 s / 2 ms), then 5 timed runs of 10
    sweeps, walls, _ = sampler_bench.timed_runs(clock.run, 0.02, 5)
    assert sweeps == 10 and clock.calls == [1, 10, 10, 10, 10, 10, 10] and walls == [pytest.approx(0.02)] * 5
    clock.calls.clear()
    probe = make_probe(eval_batches=2, family="cpu")
    sweeps, walls, _ = sampler_bench.timed_runs(clock.run, 0.02, 5, probe=probe, block="impl-block_chains-16")
    assert sweeps == 1 and clock.calls == [1, 1] and walls == [pytest.approx(0.002)] * 2
    # the real run's 1 + 10 + 5 x 10 sweeps over the probe's 2
    assert probe.blocks["impl-block_chains-16"]["scale"] == 61 / 2
    sampler_bench.timed_runs(clock.run, 1.0, 5, fixed_sweeps=7, probe=probe, block="fixed")
    assert probe.blocks["fixed"]["scale"] == 5 * 7 / 2


def test_sampler_bench_job_under_a_probe(tmp_path):
    from rgbench.experiments.sampler_bench import run_job

    runs = {"impl-block_chains-16": {"check": "speed", "implementation": "block", "chains": 16},
            "energy_speed_side-4_seed-0": {"check": "energy_speed", "implementation": "torch", "side": 4, "seed": 0}}
    outputs = {key: str(tmp_path / "runs" / "sampler_bench" / key / "metrics.json") for key in runs}
    config = {"seconds_per_run": 0.01, "repeats": 5, "seed": 0, "energy_states": 8, "runs": runs,
              **probe_block("sampler_bench_run", "cpu")}
    rows = run_job(config, outputs, device="cpu")
    assert rows[0]["sweeps"] == 1 and rows[0]["repeats"] == 5 and rows[1]["repeats"] == 2
    record = json.loads((tmp_path / "runs" / "sampler_bench" / "probe_sampler_bench_run.json").read_text())
    speed, energy = record["blocks"]["impl-block_chains-16"], record["blocks"]["energy_speed_side-4_seed-0"]
    assert speed["calls"] == 1 and speed["scale"] >= (1 + 5) / 2 and energy["scale"] == 5 / 2
    for path in outputs.values():
        assert json.loads(Path(path).read_text())["provenance"]["probe"] is True
