"""Cost table: wall time, CPU time and peak memory of every job, from ``benchmark:`` files.

Snakemake writes one TSV per job under ``benchmarks/<rule>/<wildcards...>.tsv`` with
the columns ``s`` (wall seconds), ``max_rss`` (MB), ``cpu_time`` (seconds) and more;
a job benchmarked with ``repeat`` has several rows. The device comes from the
``metrics.json`` of the same run when one can be matched, since benchmark files do
not record it. Nor do they record when a job ran: Snakemake writes the file as the job
ends, so its modification time is taken as the job's end and that minus the job's wall
seconds (all repeats) as its start (``started`` / ``finished``, UTC).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from rgbench.io import atomic_path, read_json
from rgbench.phases import PHASES, sidecar_path
from rgbench.summary.patterns import fill, wildcard_regex

# Where each job's wall time went (rgbench.phases): start-up (interpreter, Snakemake's
# preamble, imports), loading inputs, JIT compilation, compute, writing outputs, and
# `other_s`, the rest of the benchmark's wall time (process exit, Snakemake's spawning).
PHASE_COLUMNS = ["startup_s", "load_s", "compile_s", "compute_s", "write_s", "other_s"]
JOB_COLUMNS = ["experiment", "rule", "job", "wall_s", "cpu_s", "peak_mem_mb", *PHASE_COLUMNS, "device", "started",
               "finished", "benchmark"]
SUMMARY_COLUMNS = ["experiment", "jobs", "wall_s", "cpu_s", "peak_mem_mb", *PHASE_COLUMNS, "devices"]


def read_benchmark(path: str | os.PathLike) -> dict[str, float]:
    """Wall and CPU seconds (mean over repeats) and peak RSS in MB (max over repeats).

    Snakemake writes ``NA`` or ``-`` where psutil could not measure a value; those become
    NaN rather than zero, so a missing measurement is never summed as free.
    """
    frame = pd.read_csv(path, sep="\t", na_values=["NA", "-", ""])
    missing = [column for column in ("s", "max_rss", "cpu_time") if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a Snakemake benchmark file: no column(s) {missing}")
    if frame.empty:
        raise ValueError(f"{path} is an empty benchmark file")
    numeric = frame[["s", "max_rss", "cpu_time"]].apply(pd.to_numeric, errors="coerce")
    return {
        "wall_s": float(numeric["s"].mean()),
        "cpu_s": float(numeric["cpu_time"].mean()),
        "peak_mem_mb": float(numeric["max_rss"].max()),
        "elapsed_s": float(numeric["s"].sum()),
    }


def read_phases(results_dir: str | os.PathLike, benchmark: Path, wall_s: float) -> dict[str, float]:
    """The phase columns of one job (and its exact CPU seconds, ``cpu_s``) from the sidecar
    its job wrote beside its log.

    Snakemake's benchmark samples a job's CPU time every 0.5 s for 15 s and then every
    30 s, so a long job loses up to 30 CPU-seconds of its last interval; the job's own
    count at exit replaces that sampled value.

    Logs and benchmarks share a layout (``logs/<rule>/<job>.log``, ``benchmarks/<rule>/
    <job>.tsv``), so the benchmark's relative path names the sidecar. A job that wrote none
    (a rule without a Python job, a benchmark repeated by Snakemake) reads NaN.
    """
    missing = {column: float("nan") for column in PHASE_COLUMNS}
    stem = benchmark.as_posix().removesuffix(".tsv")
    path = sidecar_path(Path(results_dir) / "logs" / f"{stem}.log")
    if not path.exists():
        return missing
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return missing
    phases = {f"{name}_s": float(record.get(name, float("nan"))) for name in PHASES}
    accounted = sum(value for value in phases.values() if value == value)
    phases["other_s"] = max(0.0, wall_s - accounted) if wall_s == wall_s else float("nan")
    if "cpu" in record:
        phases["cpu_s"] = float(record["cpu"])
    return phases


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_times(path: str | os.PathLike, elapsed_s: float) -> tuple[str, str]:
    """(started, finished) of the job that wrote a benchmark file, as UTC ISO strings."""
    finished = Path(path).stat().st_mtime
    started = finished - elapsed_s if elapsed_s == elapsed_s else finished  # NaN: unknown length
    return _utc(started), _utc(finished)


def _run_devices(results_dir: Path) -> dict[tuple[str, str], str]:
    """(experiment, run_id) -> device, from every metrics.json under runs/."""
    devices: dict[tuple[str, str], str] = {}
    for path in sorted((results_dir / "runs").glob("*/**/metrics.json")):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue  # a half-written or foreign file must not break the cost table
        experiment = path.relative_to(results_dir / "runs").parts[0]
        run = path.parent.relative_to(results_dir / "runs" / experiment).as_posix()
        if record.get("device"):
            devices[(experiment, run)] = str(record["device"])
    return devices


def stage_of_rule(rule: str, rule_stages: Mapping[str, str], experiments: list[str]) -> str:
    """The experiment (or stage: data, report) a rule belongs to.

    ``rule_stages`` is what the workflow knows (the rule file each rule is defined in);
    for a benchmark left by a rule that no longer exists, the longest experiment name
    that prefixes the rule name is the best guess.
    """
    if rule in rule_stages:
        return rule_stages[rule]
    prefixes = [name for name in experiments if rule == name or rule.startswith(name + "_")]
    return max(prefixes, key=len) if prefixes else "other"


def device_from_rule(benchmark: str, rule_runs: Mapping[str, Any] | None) -> str | None:
    """The device in the metrics.json of the run directory the job wrote into.

    ``rule_runs`` holds, for the rule, its ``benchmark`` pattern and the ``run_dirs``
    patterns of its outputs under runs/; the benchmark's wildcards fill them in. None
    when the workflow says nothing about this job (an old benchmark file, say).
    """
    if not rule_runs:
        return None
    match = wildcard_regex(rule_runs["benchmark"]).match(benchmark)
    if not match:
        return None
    for run_dir in rule_runs.get("run_dirs", []):
        try:
            metrics = Path(fill(run_dir, match.groupdict())) / "metrics.json"
        except KeyError:
            continue  # the outputs use a wildcard the benchmark file does not carry
        if metrics.exists():
            with contextlib.suppress(OSError, ValueError):
                device = read_json(metrics).get("device")
                if device:
                    return str(device)
    return ""


def job_devices(experiment: str, job: str, devices: Mapping[tuple[str, str], str]) -> str:
    """The device of a job whose rule is unknown: a run named like its wildcards, if unambiguous."""
    if (experiment, job) in devices:
        return devices[(experiment, job)]
    # A job whose wildcards are a prefix of run ids (an evaluation over several runs)
    # or an experiment-level job: name the device only when it is unambiguous.
    candidates = {device for (exp, run), device in devices.items()
                  if exp == experiment and (run.startswith(job + "/") or run.startswith(job + "_"))}
    if len(candidates) == 1:
        return candidates.pop()
    return ""


def benchmark_files(results_dir: str | os.PathLike) -> Iterator[tuple[Path, Path, str, str]]:
    """Every benchmark TSV under ``<results_dir>/benchmarks``, sorted: (path, path relative
    to that folder, rule, job); a rule with one job writes ``<rule>.tsv`` (job "")."""
    bench_dir = Path(results_dir) / "benchmarks"
    for path in sorted(bench_dir.rglob("*.tsv")):
        relative = path.relative_to(bench_dir)
        if len(relative.parts) == 1:
            yield path, relative, relative.stem, ""
        else:
            yield path, relative, relative.parts[0], Path(*relative.parts[1:]).with_suffix("").as_posix()


def collect_costs(results_dir: str | os.PathLike, rule_stages: Mapping[str, str] | None = None,
                  experiments: list[str] | None = None, rule_runs: Mapping[str, Any] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-job costs and per-experiment sums from ``<results_dir>/benchmarks``.

    Returns ``(jobs, summary)``. ``summary`` has one row per experiment/stage plus a
    final ``all`` row: wall and CPU seconds summed, peak memory the largest of its jobs.
    ``rule_runs`` (rule -> benchmark and run-directory patterns, as the workflow
    declares them) ties a job to the metrics.json that names its device.
    """
    results = Path(results_dir)
    rule_stages = dict(rule_stages or {})
    rule_runs = dict(rule_runs or {})
    experiments = list(experiments or sorted({stage for stage in rule_stages.values()}))
    devices = _run_devices(results)
    rows = []
    for path, relative, rule, job in benchmark_files(results):
        experiment = stage_of_rule(rule, rule_stages, experiments)
        cost = read_benchmark(path)
        started, finished = job_times(path, cost.pop("elapsed_s"))
        cost.update(read_phases(results, relative, cost["wall_s"]))
        # the same spelling as the workflow's patterns: "<results_dir>/benchmarks/..."
        device = device_from_rule(f"{results_dir}/benchmarks/{relative.as_posix()}", rule_runs.get(rule))
        if device is None:
            device = job_devices(experiment, job, devices)
        rows.append({"experiment": experiment, "rule": rule, "job": job, **cost, "device": device,
                     "started": started, "finished": finished, "benchmark": relative.as_posix()})
    jobs = pd.DataFrame(rows, columns=JOB_COLUMNS)
    return jobs, summarise_costs(jobs)


def summarise_costs(jobs: pd.DataFrame) -> pd.DataFrame:
    def one(group: pd.DataFrame, name: str) -> dict:
        devices = sorted({d for d in group["device"] if isinstance(d, str) and d})
        return {
            "experiment": name,
            "jobs": int(len(group)),
            # min_count=1: an experiment whose every value is missing reads NaN, not 0 s
            "wall_s": group["wall_s"].sum(min_count=1),
            "cpu_s": group["cpu_s"].sum(min_count=1),
            "peak_mem_mb": group["peak_mem_mb"].max(),
            **{column: group[column].sum(min_count=1) for column in PHASE_COLUMNS},
            "devices": "; ".join(devices),
        }

    rows = [one(group, name) for name, group in jobs.groupby("experiment", sort=True)]
    if len(jobs):
        rows.append(one(jobs, "all"))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def phase_shares(jobs: pd.DataFrame) -> dict[str, float] | None:
    """Each phase's share of the job-seconds of the jobs that recorded phases (None when
    none did): where the DAG's minutes go, e.g. {"startup_s": 0.08, "compute_s": 0.85, ...}."""
    if not set(PHASE_COLUMNS) <= set(jobs.columns):
        return None
    timed = jobs.dropna(subset=["startup_s"])
    total = float(timed["wall_s"].sum())
    if timed.empty or total <= 0:
        return None
    return {column: float(timed[column].sum()) / total for column in PHASE_COLUMNS}


def write_costs(results_dir: str | os.PathLike, jobs_csv: str | os.PathLike, summary_csv: str | os.PathLike,
                rule_stages: Mapping[str, str] | None = None, experiments: list[str] | None = None,
                rule_runs: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    jobs, summary = collect_costs(results_dir, rule_stages, experiments, rule_runs)
    for frame, path in ((jobs, jobs_csv), (summary, summary_csv)):
        with atomic_path(path) as tmp:
            rounding = {"wall_s": 3, "cpu_s": 3, "peak_mem_mb": 2} | {column: 3 for column in PHASE_COLUMNS}
            frame.round(rounding).to_csv(tmp, index=False)
    return jobs, summary

