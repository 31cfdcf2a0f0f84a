"""What benchmarks/gpu_check.sh reports: each job's speedup on the GPU over the CPU, the
probe's GPU step times, and any GPU-capable run that did not run on the GPU.

Both runs are ordinary pipeline runs with their own results directories; their
Snakemake benchmark files give each job's wall seconds, their metrics.json files the
device each run used, and the probe's records (``probe_<rule>.json``) its step times.

    python -m rgbench.summary.device_check CPU_RESULTS GPU_RESULTS [--probe PROBE_RESULTS] --out DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from rgbench.io import atomic_path, read_json
from rgbench.summary.costs import read_benchmark


def job_seconds(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Wall and CPU seconds and peak memory of every benchmarked job (rule, job)."""
    root = Path(results_dir) / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        relative = path.relative_to(root)
        rule = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        job = Path(*relative.parts[1:]).with_suffix("").as_posix() if len(relative.parts) > 1 else ""
        cost = read_benchmark(path)
        rows.append({"rule": rule, "job": job, "wall_s": cost["wall_s"], "peak_mem_mb": cost["peak_mem_mb"]})
    return pd.DataFrame(rows, columns=["rule", "job", "wall_s", "peak_mem_mb"])


def speedups(cpu_dir: str | os.PathLike, gpu_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per job run in both: its CPU and GPU wall seconds and the ratio."""
    cpu, gpu = job_seconds(cpu_dir), job_seconds(gpu_dir)
    both = cpu.merge(gpu, on=["rule", "job"], suffixes=("_cpu", "_gpu"))
    both["speedup"] = both["wall_s_cpu"] / both["wall_s_gpu"]
    return both.sort_values("speedup", ascending=False).reset_index(drop=True)


def rule_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, summed CPU and GPU seconds, and their ratio."""
    grouped = table.groupby("rule").agg(jobs=("job", "size"), wall_s_cpu=("wall_s_cpu", "sum"),
                                        wall_s_gpu=("wall_s_gpu", "sum")).reset_index()
    grouped["speedup"] = grouped["wall_s_cpu"] / grouped["wall_s_gpu"]
    return grouped.sort_values("speedup", ascending=False).reset_index(drop=True)


def probe_steps(probe_dir: str | os.PathLike) -> pd.DataFrame:
    """Every probed training run's timed step seconds, FLOPs per step, the FLOP rate they
    imply and its peak device memory (from the probe records)."""
    rows = []
    for path in sorted((Path(probe_dir) / "runs").rglob("probe_*.json")):
        record = read_json(path)
        for fit in record.get("fits", []):
            timed = fit.get("step_seconds") or []
            step_s = sum(timed) / len(timed) if timed else None
            flops = fit.get("flops_per_step")
            rows.append({"rule": record["rule"], "run": path.parent.name, "device": record.get("device"),
                         "batch_size": fit.get("batch_size"), "micro_batch_size": fit.get("probe_micro_batch_size"),
                         "step_s": step_s, "flops_per_step": flops,
                         "tflops": flops / step_s / 1e12 if flops and step_s else None,
                         "peak_device_mb": fit.get("peak_device_mb")})
    return pd.DataFrame(rows, columns=["rule", "run", "device", "batch_size", "micro_batch_size", "step_s",
                                       "flops_per_step", "tflops", "peak_device_mb"])


def off_device(results_dir: str | os.PathLike, families: dict[str, str] | None = None) -> list[str]:
    """Runs under ``runs/`` whose metrics.json names a device other than CUDA: on a GPU run
    of a torch experiment, a silent fall-back to the CPU. ``families`` (experiment -> why
    it may run on the CPU) lists the experiments allowed to."""
    allowed = families or {}
    found = []
    for path in sorted((Path(results_dir) / "runs").rglob("metrics.json")):
        experiment = path.relative_to(Path(results_dir) / "runs").parts[0]
        device = str(read_json(path).get("device", ""))
        if experiment not in allowed and not device.startswith("cuda"):
            found.append(f"{path.parent.relative_to(Path(results_dir) / 'runs').as_posix()}: {device or 'no device'}")
    return found


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.round(4).to_csv(tmp, index=False)


# numpy models and CPU benchmarks: their runs record a CPU whatever `device` says
CPU_EXPERIMENTS = {"rgm": "numpy model", "sampler_bench": "CPU sampler benchmark",
                   "potts_ebm": "PCD on the CPU; only its evaluation may use the GPU"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cpu_results")
    parser.add_argument("gpu_results")
    parser.add_argument("--probe", help="results directory of the probe run on the GPU")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = speedups(args.cpu_results, args.gpu_results)
    if jobs.empty:
        print(f"no job ran in both {args.cpu_results} and {args.gpu_results}", file=sys.stderr)
        return 1
    rules = rule_speedups(jobs)
    write_csv(jobs, out / "speedup_jobs.csv")
    write_csv(rules, out / "speedup_rules.csv")
    print("speedup of the GPU run over the CPU run, per rule:")
    print(rules.to_string(index=False))
    problems = off_device(args.gpu_results, CPU_EXPERIMENTS)
    if args.probe:
        steps = probe_steps(args.probe)
        write_csv(steps, out / "probe_gpu_steps.csv")
        print("\nthe probe's GPU steps (full model and batch):")
        print(steps.to_string(index=False))
        problems += [f"probe {p}" for p in off_device(args.probe, CPU_EXPERIMENTS)]
    if problems:
        print("\nruns that should have used the GPU but did not:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
