"""The paper preset's cost, estimated from its probe (``config/probe.yaml``).

A probed job ran at the paper's model and batch size for a few optimiser steps, its
evaluation loops cut to a few batches, and left a record beside its outputs
(``runs/<experiment>/<run>/probe_<rule>.json``, see :class:`rgbench.probe.Probe`):
seconds, FLOPs and dispatched operations per step, the steps and epochs of the real run,
and the work of each evaluation block with the factor by which it was cut. Its Snakemake
benchmark file gives its wall and CPU seconds and its peak resident memory.

The estimate of the real job, on the machine that ran the probe:
``overhead + steps * step_seconds + sum(block_seconds * cut)``, where the overhead (start-up,
data loading, model construction: what no step or block measured) is not scaled, a per-epoch
block (validation) is scaled to the real run's epochs, and every block's cut is the largest
of its loops' (an upper bound). On the named GPU each step and block costs its FLOPs at the
stated share of the GPU's peak plus one launch per dispatched operation (what bounds small
models), with the same overhead. A job holds a GPU only when its resource family asks for
one: a job of a CPU family has no GPU-hours (its hours are the probe machine's), and a job
whose record says ``cpu_bound`` (its measured loops run on the CPU whatever its device:
numba kernels, numpy, CPU tensors) holds its GPU for the hours the probe's machine needs.
Peak memory needs no scaling: the probe ran the real model, batch and chains. Jobs whose
loops do not honour the probe are listed, not estimated; data jobs run at the paper's size
in the probe, so their measurement is their cost.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from rgbench.io import atomic_path, read_json
from rgbench.summary.costs import benchmark_files, read_benchmark

COLUMNS = ["experiment", "rule", "job", "family", "estimate", "represents", "device", "n_params", "batch_size",
           "micro_batch_size", "steps_probe", "steps_full", "step_s", "flops_per_step", "probe_wall_s",
           "peak_host_mb", "peak_device_mb", "device_mb_est", "host_mb_per_sample", "hours_here", "cpu_hours", "gpu",
           "gpu_hours",
           "runtime_min", "mem_mb", "gpus", "runtime_ok", "mem_ok", "note"]
EPOCH_BLOCK = "epoch_end"  # the per-epoch block fit() measures (validation), scaled by the real run's epochs


@dataclass(frozen=True)
class GpuSpec:
    """The GPU the GPU-hours are for (the config's ``probe.gpu``)."""

    name: str
    peak_tflops: float
    utilisation: float
    launch_us: float

    def seconds(self, flops: float, ops: float) -> float:
        return flops / (self.peak_tflops * 1e12 * self.utilisation) + ops * self.launch_us * 1e-6


@dataclass
class Work:
    """Seconds on the probe's machine, FLOPs and dispatched operations of some work."""

    seconds: float = 0.0
    flops: float = 0.0
    ops: float = 0.0

    def add(self, seconds: float, flops: float, ops: float, times: float = 1.0) -> None:
        self.seconds += seconds * times
        self.flops += flops * times
        self.ops += ops * times


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def scale_record(record: Mapping[str, Any]) -> tuple[Work, Work, dict[str, Any]]:
    """(measured, full) work of one probe record, and what it says about the job.

    ``measured`` is what the probe's steps and blocks took; ``full`` what the real run's
    steps and blocks will take. A fit whose real length is unknown (a generator of
    batches) counts its probe steps only, and says so in ``notes``.
    """
    measured, full = Work(), Work()
    info: dict[str, Any] = {"steps_probe": 0, "steps_full": 0, "epochs_full": 0, "batch_size": None,
                            "micro_batch_size": None, "peak_device_mb": None, "host_mb_per_sample": None,
                            "peak_host_mb": None, "notes": []}
    for fit in record.get("fits", []):
        timed = [float(s) for s in fit.get("step_seconds") or []]
        first = _number(fit.get("first_step_seconds")) or 0.0
        # Both bound the step time from above: the first step also pays for counting its
        # work, a timed one for whatever else the machine did meanwhile; the smaller holds.
        step_s = min(first, sum(timed) / len(timed)) if timed and first else (first or max(timed, default=0.0))
        flops, ops = _number(fit.get("flops_per_step")) or 0.0, _number(fit.get("ops_per_step")) or 0.0
        steps_run = int(fit.get("steps_run") or 0)
        steps_full = fit.get("steps_planned")
        if steps_full is None:
            steps_full = steps_run
            info["notes"].append(f"{fit.get('description')}: the real run's steps are unknown; probe steps counted")
        measured.add(first + sum(timed), 0.0, 0.0)
        full.add(step_s, flops, ops, times=float(steps_full))
        info["steps_probe"] += steps_run
        info["steps_full"] += int(steps_full)
        info["epochs_full"] += int(fit.get("epochs_planned") or 0)
        info["batch_size"] = fit.get("batch_size")
        info["micro_batch_size"] = fit.get("micro_batch_size")
        for key in ("peak_device_mb", "host_mb_per_sample", "peak_host_mb"):
            value = _number(fit.get(key))
            if value is not None:
                info[key] = max(info[key] or 0.0, value)
        per_sample, param_mb = _number(fit.get("host_mb_per_sample")), _number(fit.get("param_mb"))
        if per_sample is not None and param_mb is not None:
            # weights, gradients and two optimiser moments, and one pass's activations at the
            # real run's micro-batch (the whole batch without one)
            samples = min(fit.get("micro_batch_size") or fit.get("batch_size") or 0, fit.get("batch_size") or 0)
            info["device_mb_est"] = max(info.get("device_mb_est") or 0.0, 4 * param_mb + per_sample * samples)
        info["_flop_steps"] = info.get("_flop_steps", 0.0) + flops * float(steps_full)
        info["_step_seconds"] = info.get("_step_seconds", 0.0) + step_s * float(steps_full)
    epochs_run = sum(int(fit.get("epochs_run") or 0) for fit in record.get("fits", []))
    for name, block in record.get("blocks", {}).items():
        seconds, flops, ops = (float(block.get(key, 0.0)) for key in ("seconds", "flops", "ops"))
        cut = float(block.get("scale", 1.0))
        measured.add(seconds, 0.0, 0.0)
        times = cut
        if name == EPOCH_BLOCK:  # measured once per probe epoch; the real run has more epochs
            times = cut * info["epochs_full"] / max(int(block.get("calls", epochs_run)) or 1, 1)
        full.add(seconds, flops, ops, times=times)
    return measured, full, info


def estimate_job(records: list[Mapping[str, Any]], benchmark: Mapping[str, float] | None,
                 gpu: GpuSpec) -> dict[str, Any]:
    """The estimate of one probed job from its probe records (one per run it trained) and
    its benchmark (wall_s, cpu_s, peak_mem_mb)."""
    measured, full = Work(), Work()
    notes: list[str] = []
    steps_probe = steps_full = 0
    flop_steps = step_seconds = 0.0
    peaks: dict[str, float | None] = {"peak_device_mb": None, "host_mb_per_sample": None, "peak_host_mb": None,
                                      "device_mb_est": None}
    batch, micro = None, None
    for record in records:
        m, f, info = scale_record(record)
        measured.add(m.seconds, m.flops, m.ops)
        full.add(f.seconds, f.flops, f.ops)
        steps_probe += info["steps_probe"]
        steps_full += info["steps_full"]
        flop_steps += info.get("_flop_steps", 0.0)
        step_seconds += info.get("_step_seconds", 0.0)
        batch, micro = info["batch_size"] or batch, info["micro_batch_size"] or micro
        notes += info["notes"]
        for key in peaks:
            if info.get(key) is not None:
                peaks[key] = max(peaks[key] or 0.0, info[key])
    cpu_bound = any(bool(record.get("cpu_bound")) for record in records)
    wall = benchmark["wall_s"] if benchmark else measured.seconds
    if not benchmark:
        notes.append("no benchmark file: the overhead outside the measured steps is unknown")
    overhead = max(wall - measured.seconds, 0.0)
    here = overhead + full.seconds
    cpu_share = benchmark["cpu_s"] / wall if benchmark and wall > 0 and _number(benchmark["cpu_s"]) else 1.0
    host = [v for v in (benchmark["peak_mem_mb"] if benchmark else None, peaks["peak_host_mb"]) if _number(v)]
    first = records[0]
    return {
        "represents": int(first.get("represents", 1)),
        "device": first.get("device", ""),
        "n_params": max(int(r.get("n_params") or 0) for r in records),
        "batch_size": batch,
        "micro_batch_size": micro,
        "steps_probe": steps_probe,
        "steps_full": steps_full,
        "step_s": step_seconds / steps_full if steps_full else None,
        "flops_per_step": flop_steps / steps_full if steps_full else None,
        "probe_wall_s": wall,
        "peak_host_mb": max(host) if host else None,
        "peak_device_mb": peaks["peak_device_mb"],
        "device_mb_est": peaks["device_mb_est"],
        "host_mb_per_sample": peaks["host_mb_per_sample"],
        "hours_here": here / 3600,
        "cpu_hours": here * cpu_share / 3600,
        "gpu": gpu.name,
        "gpu_hours": here / 3600 if cpu_bound else (overhead + gpu.seconds(full.flops, full.ops)) / 3600,
        "cpu_bound": cpu_bound,
        "note": "; ".join(notes),
    }


def read_records(results_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Probe records under ``runs/``, grouped by the benchmark file of the job that wrote them."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((Path(results_dir) / "runs").rglob("probe_*.json")):
        record = read_json(path)
        jobs.setdefault(str(record["benchmark"]), []).append(record)
    return jobs


def holds_gpu(row: dict[str, Any], requests: Mapping[str, Any] | None) -> None:
    """A probed job's GPU-hours as its resource family holds a GPU: none for a family that
    asks for no GPU (a CPU job), the hours on the probe's machine for a ``cpu_bound`` job that
    holds one (its GPU waits while its loops run on the CPU); notes both."""
    cpu_bound = bool(row.pop("cpu_bound", False))
    notes = [row["note"]] if row.get("note") else []
    if requests is not None and not requests.get("gpu"):
        row.update(gpu=None, gpu_hours=None)
        notes.append("a CPU job: hours on the probe's machine, no GPU")
    elif cpu_bound:
        notes.append("its loops run on the CPU whatever the device: it holds its GPU for the hours here")
    row["note"] = "; ".join(notes)


def requests_check(row: dict[str, Any], requests: Mapping[str, Any] | None, margins: Mapping[str, float]) -> None:
    """Fill in what the preset asks for the job's family and whether it exceeds the
    estimate by the margins: runtime over the GPU estimate for a job that holds a GPU (the
    estimate on the probe's machine otherwise), mem_mb over the peak host memory."""
    if not requests:
        return
    row.update(runtime_min=requests.get("runtime"), mem_mb=requests.get("mem_mb"), gpus=requests.get("gpu", 0))
    hours = row.get("gpu_hours") if row["gpus"] else row.get("hours_here")
    if _number(hours) is not None and _number(row["runtime_min"]) is not None:
        row["runtime_ok"] = bool(row["runtime_min"] >= margins["runtime"] * hours * 60)
    if _number(row.get("peak_host_mb")) is not None and _number(row["mem_mb"]) is not None:
        row["mem_ok"] = bool(row["mem_mb"] >= margins["mem_mb"] * row["peak_host_mb"])


def paper_cost_table(results_dir: str | os.PathLike, resources: Mapping[str, Mapping[str, Any]],
                     gpu: GpuSpec | Mapping[str, Any], margins: Mapping[str, float],
                     rule_stages: Mapping[str, str] | None = None, measured_stages: Iterable[str] = ("data",),
                     report_rules: Iterable[str] = ()) -> pd.DataFrame:
    """One row per job of the probe: probed jobs estimated (``estimate`` = probe), jobs of
    ``measured_stages`` (they ran at the paper's size) as measured, figure and table jobs
    (``report_rules``) as what the probe's runs cost them (``report``), the others listed as
    not probed. ``resources`` is the preset's ``resources`` block (what each family asks)."""
    report_rules = set(report_rules)
    gpu = gpu if isinstance(gpu, GpuSpec) else GpuSpec(**gpu)
    rule_stages = dict(rule_stages or {})
    results = Path(results_dir)
    records = read_records(results)
    rows = []
    for path, relative, rule, job in benchmark_files(results):
        stage = rule_stages.get(rule, "other")
        bench = read_benchmark(path)
        mine = records.pop(str(path), None) or records.pop(f"{results_dir}/benchmarks/{relative.as_posix()}", None)
        row: dict[str, Any] = {"experiment": stage, "rule": rule, "job": job}
        if mine:
            row.update(family=mine[0].get("family"), estimate="probe", **estimate_job(mine, bench, gpu))
            holds_gpu(row, resources.get(row["family"] or ""))
        elif stage in measured_stages or rule in report_rules:
            measured = stage in measured_stages
            row.update(estimate="measured" if measured else "report", represents=1, probe_wall_s=bench["wall_s"],
                       peak_host_mb=bench["peak_mem_mb"], hours_here=bench["wall_s"] / 3600,
                       cpu_hours=bench["cpu_s"] / 3600, family="data" if measured else "report",
                       note="runs at the paper's size in the probe: the measurement is the cost" if measured else
                       "a figure or table of the probe's runs: its own time, not scaled")
        else:
            row.update(estimate="not_probed", represents=1, probe_wall_s=bench["wall_s"],
                       peak_host_mb=bench["peak_mem_mb"],
                       note="its loops do not honour the probe block: the probe ran a cut config, not the paper's work")
            rows.append(row)
            continue
        requests_check(row, resources.get(row.get("family") or ""), margins)
        rows.append(row)
    for benchmark, orphan in records.items():  # a record without its benchmark file (job still running?)
        row = {"experiment": rule_stages.get(orphan[0]["rule"], "other"), "rule": orphan[0]["rule"],
               "job": Path(benchmark).stem, "family": orphan[0].get("family"), "estimate": "probe",
               **estimate_job(orphan, None, gpu)}
        holds_gpu(row, resources.get(row["family"] or ""))
        requests_check(row, resources.get(row["family"] or ""), margins)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def paper_totals(table: pd.DataFrame) -> dict[str, Any]:
    """The preset's sums over its estimated jobs (each counted as often as it ``represents``)
    and its longest job, for the report and the README."""
    estimated = table[table["estimate"].isin(["probe", "measured"])]  # the paper's jobs, not the probe's figures
    times = pd.to_numeric(estimated["represents"], errors="coerce").fillna(1)
    gpu = pd.to_numeric(estimated["gpu_hours"], errors="coerce")
    here = pd.to_numeric(estimated["hours_here"], errors="coerce")
    cpu = pd.to_numeric(estimated["cpu_hours"], errors="coerce")
    longest = gpu.idxmax() if gpu.notna().any() else None
    cpu_jobs = gpu.isna()  # jobs that hold no GPU: data jobs and CPU families
    longest_cpu = here[cpu_jobs].idxmax() if here[cpu_jobs].notna().any() else None
    return {
        "gpu": str(table["gpu"].dropna().iloc[0]) if table["gpu"].notna().any() else "",
        "gpu_hours": float((gpu * times).sum(min_count=1)) if gpu.notna().any() else None,
        "cpu_hours": float((cpu * times).sum()),
        "hours_here": float((here * times).sum()),
        "paper_jobs": int(times.sum()),
        "longest_job": None if longest is None else f"{estimated.at[longest, 'rule']}/{estimated.at[longest, 'job']}",
        "longest_gpu_hours": None if longest is None else float(gpu[longest]),
        "cpu_job_hours": float((here[cpu_jobs] * times[cpu_jobs]).sum()),
        "longest_cpu_job": None if longest_cpu is None else
        f"{estimated.at[longest_cpu, 'rule']}/{estimated.at[longest_cpu, 'job']}",
        "longest_cpu_hours": None if longest_cpu is None else float(here[longest_cpu]),
        "not_probed": sorted(set(table.loc[table["estimate"] == "not_probed", "rule"])),
        "requests_short": sorted(set(table.loc[table["runtime_ok"].eq(False) | table["mem_ok"].eq(False), "rule"])),
    }


def _hours(value: float) -> str:
    """Hours to three significant digits, whole hours with separators from 1,000 on (no exponent)."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def paper_cost_sentence(totals: Mapping[str, Any]) -> str:
    """The README's and the report's one-line summary of :func:`paper_totals`."""
    if totals.get("gpu_hours") is None:
        return "No job of this probe was estimated."
    text = (f"The paper preset costs about {_hours(totals['gpu_hours'])} GPU-hours on an {totals['gpu']} "
            f"({totals['paper_jobs']} jobs estimated); its longest job, {totals['longest_job']}, about "
            f"{_hours(totals['longest_gpu_hours'])} hours. On the probe's machine: {totals['hours_here']:,.0f} hours.")
    if totals.get("longest_cpu_job"):
        text += (f" Jobs that hold no GPU add {_hours(totals['cpu_job_hours'])} hours on the probe's machine; the "
                 f"longest, {totals['longest_cpu_job']}, {_hours(totals['longest_cpu_hours'])} hours.")
    if totals["not_probed"]:
        text += f" Not estimated (their loops do not honour the probe): {', '.join(totals['not_probed'])}."
    if totals["requests_short"]:
        text += f" Requests below the estimate with its margin: {', '.join(totals['requests_short'])}."
    return text


def write_paper_cost(results_dir: str | os.PathLike, output_csv: str | os.PathLike,
                     resources: Mapping[str, Mapping[str, Any]], gpu: Mapping[str, Any], margins: Mapping[str, float],
                     rule_stages: Mapping[str, str] | None = None, report_rules: Iterable[str] = ()) -> pd.DataFrame:
    table = paper_cost_table(results_dir, resources, gpu, margins, rule_stages, report_rules=report_rules)
    with atomic_path(output_csv) as tmp:
        table.round({"step_s": 4, "probe_wall_s": 2, "peak_host_mb": 1, "peak_device_mb": 1, "device_mb_est": 1,
                     "host_mb_per_sample": 2,
                     "hours_here": 4, "cpu_hours": 4, "gpu_hours": 4}).to_csv(tmp, index=False)
    return table
