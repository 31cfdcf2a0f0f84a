"""Gradient accumulation and the probe mechanism of the shared training loop."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from rgbench.training import (Probe, TensorBatches, accumulate_gradients, capped, fit, load_checkpoint, measured,
                              micro_batches, probe_record_path, split_probe)


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


def hand_made_probe(results, rule="demo_train", run="seed-0", family="train", wall=100.0, rss=1000.0):
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
    probe.write(probe_record_path(results / "runs" / "demo" / run, probe), device="cpu", n_params=1234)
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
