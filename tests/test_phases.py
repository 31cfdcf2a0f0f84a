"""Where a job's time goes: the phase clock, its sidecar and the cost table's phase columns."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rgbench.io import load_npz, save_npz_atomic
from rgbench.job import snakemake_job
from rgbench.phases import CLOCK, PHASES, PhaseClock, sidecar_path
from rgbench.summary.costs import PHASE_COLUMNS, collect_costs


def busy(seconds: float, clock=time.perf_counter) -> None:
    end = clock() + seconds
    while clock() < end:
        pass


def test_phases_are_exclusive_and_sum_to_the_job_time() -> None:
    clock = PhaseClock()
    clock.start()
    busy(0.02)
    with clock.phase("load"):
        busy(0.03)
        with clock.phase("write"):  # a write inside a load counts once, as a write
            busy(0.04)
    totals = clock.finish(startup_s=1.5)
    assert totals["startup"] == 1.5
    assert totals["load"] == pytest.approx(0.03, abs=0.01)
    assert totals["write"] == pytest.approx(0.04, abs=0.01)
    assert totals["compute"] == pytest.approx(0.02, abs=0.01)
    assert sum(totals[name] for name in PHASES if name != "startup") == pytest.approx(totals["job_s"], abs=1e-6)


def test_compile_time_reported_afterwards_moves_out_of_the_running_phase() -> None:
    clock = PhaseClock()
    clock.start()
    with clock.phase("load"):
        busy(0.05)
        clock.move("compile", 0.03)
        clock.move("compile", 10.0)  # never more than the phase has spent
    totals = clock.finish(startup_s=None)
    assert totals["compile"] == pytest.approx(0.05, abs=0.01)
    assert totals["load"] == pytest.approx(0.0, abs=0.01)
    assert math.isnan(totals["startup"])


def test_unknown_phase_is_an_error_and_a_clock_outside_a_job_is_a_no_op() -> None:
    clock = PhaseClock()
    with clock.phase("load"):  # not started: nothing recorded, nothing raised
        pass
    assert clock.totals["load"] == 0.0
    clock.start()
    with pytest.raises(ValueError, match="unknown phase"):
        with clock.phase("thinking"):
            pass
    with pytest.raises(RuntimeError, match="never started"):
        PhaseClock().finish(None)


def test_a_job_writes_its_phases_beside_its_log_and_the_cost_table_reads_them(tmp_path: Path) -> None:
    results = tmp_path / "results"
    log = results / "logs" / "demo_train" / "seed-0.lr-0.1.log"  # a dot in a job name survives
    data = tmp_path / "data.npz"
    save_npz_atomic(data, x=np.arange(10))
    smk = SimpleNamespace(log=[str(log)], rule="demo_train", threads=1, input=[], output=[], wildcards={},
                          params={}, config={})
    with snakemake_job(smk, torch_threads=False):
        load_npz(data)
        busy(0.05, clock=time.process_time)  # 0.05 CPU-s, however busy the machine
    record = json.loads(sidecar_path(log).read_text())
    assert set(record) == {*PHASES, "job_s", "cpu"}
    assert record["cpu"] >= 0.04  # the busy loop ran on the CPU
    assert record["compute"] >= 0.04
    assert record["startup"] > 0  # this process started before the job did
    assert CLOCK._stack == []  # the clock is closed once the job ends

    bench = results / "benchmarks" / "demo_train" / "seed-0.lr-0.1.tsv"
    bench.parent.mkdir(parents=True)
    wall = record["startup"] + record["job_s"] + 2.0
    bench.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:00:01\t100\t1.0\n")
    jobs, summary = collect_costs(results, {"demo_train": "demo"})
    row = jobs.iloc[0]
    assert row["compute_s"] == pytest.approx(record["compute"])
    # the wall time no phase claims (the sidecar rounds each phase to the millisecond)
    assert row["other_s"] == pytest.approx(2.0, abs=0.005)
    assert row["cpu_s"] == pytest.approx(record["cpu"])  # the job's own count, not the sampled 1.0
    assert sum(row[column] for column in PHASE_COLUMNS) == pytest.approx(wall, abs=1e-9)
    assert summary.set_index("experiment").loc["all", "startup_s"] == pytest.approx(record["startup"])


def test_phase_shares_cover_the_timed_jobs_only() -> None:
    import pandas as pd

    from rgbench.summary.costs import phase_shares

    jobs = pd.DataFrame({"wall_s": [10.0, 100.0], "startup_s": [2.0, float("nan")], "load_s": [1.0, float("nan")],
                         "compile_s": [0.0, float("nan")], "compute_s": [6.0, float("nan")],
                         "write_s": [0.5, float("nan")], "other_s": [0.5, float("nan")]})
    shares = phase_shares(jobs)
    assert shares == pytest.approx({"startup_s": 0.2, "load_s": 0.1, "compile_s": 0.0, "compute_s": 0.6,
                                    "write_s": 0.05, "other_s": 0.05})
    assert phase_shares(jobs.iloc[1:]) is None  # no job recorded phases


def test_numba_compile_time_is_charged_to_compile() -> None:
    import numba

    from rgbench.phases import watch_compilers

    @numba.njit(cache=False)
    def doubled_sum(x: np.ndarray) -> float:
        return x.sum() * 2.0

    CLOCK.start()
    watch_compilers()
    assert doubled_sum(np.ones(3)) == 6.0  # the first call compiles
    totals = CLOCK.finish(startup_s=0.0)
    assert totals["compile"] > 0.01
    assert totals["compile"] + totals["compute"] == pytest.approx(totals["job_s"], abs=1e-6)


def test_every_rule_logs_where_its_benchmark_says() -> None:
    """The cost table finds a job's phases beside its log by the benchmark's path, so a
    rule's LOG(...) and BENCH(...) must name the same rule and job."""
    import re

    rules_dir = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    mismatched = []
    for path in sorted(rules_dir.glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule )", path.read_text()):
            log = re.search(r"\bLOG\((.*?)\)\s*,?\s*\n", block)
            bench = re.search(r"\bBENCH\((.*?)\)\s*\n", block)
            if log and bench and log.group(1).rstrip(", ") != bench.group(1).rstrip(", "):
                name = re.search(r"rule (\w+)", block)
                mismatched.append(f"{path.name}:{name.group(1) if name else '?'}: LOG({log.group(1)}) "
                                  f"vs BENCH({bench.group(1)})")
    assert not mismatched, mismatched


def test_numpy_only_jobs_start_without_importing_torch() -> None:
    """The RGM's jobs and the data jobs never run torch code; importing it cost ~2 s of
    start-up each (issue 24). A fresh interpreter, so an earlier test's import cannot hide it."""
    import subprocess
    import sys

    modules = ["rgbench.job", "rgbench.phases", "rgbench.probe", "rgbench.experiments.rgm", "rgbench.data.msds",
               "rgbench.data.preprocess"]
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
