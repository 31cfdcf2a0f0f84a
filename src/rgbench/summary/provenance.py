"""How the results were produced: commit, machine and devices, DAG time, the command.

Everything here is read from what the run left behind (metrics.json, the cost table
built from Snakemake's benchmark files, the config files of the checkout), so the page
says what happened, not what a preset intends.
"""

from __future__ import annotations

import copy
import os
import platform
import shlex
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import yaml

from rgbench.io import read_json


def git_describe(repo_root: str | os.PathLike) -> str:
    """Short commit of the checkout, with ``+dirty`` when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo_root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root,
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


@dataclass
class RunRecords:
    """What the metrics.json files of some experiments say about where they ran."""

    devices: Counter  # device -> number of runs
    commits: list[str]
    runs: int


def run_records(results_dir: str | os.PathLike, experiments: Iterable[str]) -> RunRecords:
    devices: Counter = Counter()
    commits: set[str] = set()
    runs = 0
    for experiment in experiments:
        for path in sorted(Path(results_dir, "runs", experiment).glob("**/metrics.json")):
            try:
                record = read_json(path)
            except (OSError, ValueError):
                continue  # a half-written or foreign file must not break the page
            runs += 1
            if record.get("device"):
                devices[str(record["device"])] += 1
            commit = (record.get("versions") or {}).get("git_commit")
            if commit:
                commits.add(str(commit))
    return RunRecords(devices=devices, commits=sorted(commits), runs=runs)


def machine_description() -> str:
    """The machine building the page: CPU model, logical cores, memory, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [cpu, f"{os.cpu_count()} logical cores"]
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        parts.append(f"{memory / 2**30:.0f} GiB memory")
    except (ValueError, OSError, AttributeError):
        pass
    parts.append(f"{platform.system()} {platform.release()}".strip())
    return ", ".join(parts)


# --------------------------------------------------------------------------- DAG time

@dataclass
class DagTime:
    jobs: int
    cpu_s: float  # sum of the jobs' CPU seconds
    job_wall_s: float  # sum of the jobs' wall seconds
    busy_s: float  # time during which at least one benchmarked job ran
    span_s: float  # first start to last end
    first_start: str
    last_end: str

    @property
    def several_sittings(self) -> bool:
        """True when the jobs ran in separate invocations (idle gaps of over 10 min)."""
        return self.span_s - self.busy_s > 600


def dag_time(jobs: pd.DataFrame | None) -> DagTime | None:
    """Wall and CPU time of the DAG from the cost table (one row per benchmarked job).

    The span runs from the earliest job start to the latest job end; ``busy_s`` is the
    length of the union of the jobs' intervals, which leaves out idle gaps between
    invocations. Both miss jobs without a ``benchmark:`` (quick table and claims jobs).
    """
    if jobs is None or jobs.empty or not {"started", "finished"} <= set(jobs.columns):
        return None
    start = pd.to_datetime(jobs["started"], utc=True, errors="coerce")
    end = pd.to_datetime(jobs["finished"], utc=True, errors="coerce")
    ok = start.notna() & end.notna()
    if not ok.any():
        return None
    intervals = sorted(zip(start[ok], end[ok]))
    busy, current_start, current_end = 0.0, intervals[0][0], intervals[0][1]
    for begin, finish in intervals[1:]:
        if begin > current_end:
            busy += (current_end - current_start).total_seconds()
            current_start, current_end = begin, finish
        else:
            current_end = max(current_end, finish)
    busy += (current_end - current_start).total_seconds()
    first, last = start[ok].min(), end[ok].max()
    return DagTime(jobs=int(len(jobs)), cpu_s=float(pd.to_numeric(jobs["cpu_s"], errors="coerce").sum()),
                   job_wall_s=float(pd.to_numeric(jobs["wall_s"], errors="coerce").sum()), busy_s=busy,
                   span_s=(last - first).total_seconds(), first_start=first.strftime("%Y-%m-%d %H:%M:%S UTC"),
                   last_end=last.strftime("%Y-%m-%d %H:%M:%S UTC"))


def format_seconds(seconds: float) -> str:
    """``95 s``, ``12.5 min``, ``3.2 h``."""
    if seconds != seconds:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- the command

def _merge(base: Any, overlay: Any) -> Any:
    """Snakemake's config merge: mappings key by key, anything else (lists too) replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(overlay)


def _difference(expected: Any, actual: Any) -> Any:
    """The part of ``actual`` that differs from ``expected`` (None when nothing does)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        diff = {}
        for key, value in actual.items():
            if key not in expected:
                diff[key] = value
                continue
            sub = _difference(expected[key], value)
            if sub is not None:
                diff[key] = sub
        return diff or None
    return None if expected == actual else actual


def reproduce_command(workflow_config: Mapping[str, Any] | None, repo_root: str | os.PathLike,
                      preset: str) -> str:
    """The command that rebuilds these results and this page from the checkout.

    The preset's overlay ``config/<preset>.yaml`` (when it exists) over ``config.yaml``;
    whatever the run's config holds beyond that becomes ``--config key=value`` (Snakemake
    merges those mappings key by key, as it does overlays).
    """
    words = ["snakemake", "--cores", "all"]
    root = Path(repo_root)
    overlay = root / "config" / f"{preset}.yaml"
    if overlay.exists():
        words += ["--configfile", f"config/{preset}.yaml"]
    if workflow_config is None:
        return shlex.join(words)
    try:
        expected = yaml.safe_load((root / "config.yaml").read_text()) or {}
        if overlay.exists():
            expected = _merge(expected, yaml.safe_load(overlay.read_text()) or {})
    except (OSError, yaml.YAMLError):
        return shlex.join(words) + "  # (config.yaml could not be read: overrides unknown)"
    diff = _difference(expected, dict(workflow_config)) or {}
    overrides = []
    for key, value in diff.items():
        if isinstance(value, (dict, list)):
            text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        else:
            text = str(value)
        overrides.append(f"{key}={text}")
    if overrides:
        words += ["--config", *overrides]
    return shlex.join(words)
