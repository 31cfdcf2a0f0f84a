"""The default DAG's job-seconds before and after a change, on one machine (not a test).

    python benchmarks/dag_bench.py --before 6882f89 --after HEAD --mnist-source ../shared/data/mnist
    python benchmarks/dag_bench.py --results-before /tmp/a/results --results-after /tmp/b/results

Checks each revision out into a fresh clone under ``--workdir``, runs the whole default
DAG there (``snakemake --cores N``), one revision after the other, and compares their
benchmark files: job-seconds (the sum of every job's wall time, what a cluster bills and
what ``--cores all`` divides) per experiment, the after/before ratio, and the ten
longest jobs of each run with their phases (start-up, loading, compilation, compute,
writing; rgbench.phases) where the revision records them. Run it on an otherwise idle
machine: both runs must see the same load. Issue 24's target is a total ratio <= 0.67.
``--results-*`` compares two existing results directories without running anything.
Writes ``dag_bench.csv`` (one row per experiment) into ``--workdir``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rgbench.summary.costs import PHASE_COLUMNS, collect_costs

TARGET_RATIO = 0.67
REPO = Path(__file__).resolve().parents[1]


def rule_stages(checkout: Path) -> dict[str, str]:
    """rule -> experiment/stage, from the rule file each rule is defined in."""
    stages = {}
    for path in sorted((checkout / "workflow" / "rules").glob("*.smk")):
        stage = path.stem.removesuffix("_functions")
        for line in path.read_text().splitlines():
            if line.startswith("rule ") and line.rstrip().endswith(":"):
                stages[line[len("rule "):].rstrip(":").strip()] = stage
    return stages


def run_revision(revision: str, workdir: Path, cores: int, mnist_source: str, extra: list[str]) -> Path:
    """Clone ``revision`` into ``workdir/<revision>`` and run its default DAG; the results dir."""
    checkout = workdir / revision.replace("/", "_")
    if checkout.exists():
        raise SystemExit(f"{checkout} exists; remove it or pass another --workdir")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", revision], check=True)
    command = ["snakemake", "--cores", str(cores), "--config", f"mnist_source={mnist_source}", *extra]
    started = time.perf_counter()
    with open(checkout / "dag_bench.log", "w") as log:
        subprocess.run(command, cwd=checkout, check=True, stdout=log, stderr=subprocess.STDOUT)
    print(f"{revision}: default DAG in {time.perf_counter() - started:.0f} s wall ({checkout})", flush=True)
    return checkout / "results"


def job_costs(results: Path) -> pd.DataFrame:
    """Every job's costs, with the experiment taken from the rule files beside the results."""
    checkout = results.parent
    stages = rule_stages(checkout) if (checkout / "workflow").exists() else {}
    jobs, _ = collect_costs(results, rule_stages=stages)
    return jobs


def compare(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    sums = pd.DataFrame({
        "jobs_before": before.groupby("experiment").size(),
        "jobs_after": after.groupby("experiment").size(),
        "job_s_before": before.groupby("experiment")["wall_s"].sum(),
        "job_s_after": after.groupby("experiment")["wall_s"].sum(),
    }).fillna(0)
    sums.loc["all"] = sums.sum()
    sums["ratio"] = sums["job_s_after"] / sums["job_s_before"]
    return sums.reset_index(names="experiment")


def top_jobs(jobs: pd.DataFrame, n: int = 10) -> str:
    columns = ["experiment", "rule", "job", "wall_s", "cpu_s"] + [c for c in PHASE_COLUMNS if c in jobs]
    frame = jobs.sort_values("wall_s", ascending=False).head(n)[columns]
    return frame.to_string(index=False, float_format=lambda value: f"{value:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision of the first run")
    parser.add_argument("--after", default="HEAD", help="git revision of the second run")
    parser.add_argument("--results-before", type=Path, help="compare an existing results dir instead")
    parser.add_argument("--results-after", type=Path)
    parser.add_argument("--mnist-source", default=os.environ.get("RGBENCH_MNIST_SOURCE", ""))
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, default=Path("dag_bench"))
    parser.add_argument("snakemake_args", nargs="*", help="passed to both runs (after --)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.results_before and args.results_after:
        before_dir, after_dir = args.results_before, args.results_after
    elif args.before:
        before_dir = run_revision(args.before, args.workdir, args.cores, args.mnist_source, args.snakemake_args)
        after_dir = run_revision(args.after, args.workdir, args.cores, args.mnist_source, args.snakemake_args)
    else:
        parser.error("give --before (and --after) to run, or --results-before and --results-after to compare")
    before, after = job_costs(before_dir), job_costs(after_dir)
    table = compare(before, after)
    table.to_csv(args.workdir / "dag_bench.csv", index=False)
    print(table.to_string(index=False, float_format=lambda value: f"{value:.2f}"))
    for name, jobs in (("before", before), ("after", after)):
        total = jobs["wall_s"].sum()
        print(f"\nten longest jobs, {name} ({total:.0f} job-s, {jobs['cpu_s'].sum():.0f} CPU-s in {len(jobs)} jobs; "
              f"the longest is {100 * jobs['wall_s'].max() / total:.1f}% of the job-seconds, the floor of any "
              "machine's wall time):")
        print(top_jobs(jobs))
    ratio = float(table.loc[table["experiment"] == "all", "ratio"].iloc[0])
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"\njob-seconds after/before: {ratio:.3f} ({verdict} <= {TARGET_RATIO})")
    sys.exit(0 if ratio <= TARGET_RATIO else 1)


if __name__ == "__main__":
    main()
