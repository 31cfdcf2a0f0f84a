"""The paper preset before anyone spends GPU hours on it: its probe, its cost estimate and
what a SLURM cluster receives.

- The probe overlay (config/probe.yaml) keeps every paper model and batch size of every
  experiment (they all honour the probe block), and turns the probe on.
- docs/paper-cost.csv (the cost table of a probe run, copied from
  results/tables/paper_cost.csv) says what each paper job costs; every request of
  config/paper.yaml must exceed it with the configured margins.
- The paper preset through profiles/slurm, against a stand-in `sbatch` that records its
  arguments: each training and evaluation job asks for one GPU, the family's memory and
  minutes, and the GPU partition the user sets in config/paper.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import copy_workflow, default_config, merged

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper.yaml"
PROBE = ROOT / "config" / "probe.yaml"
COST = ROOT / "docs" / "paper-cost.csv"
PROBED = ("glonet", "rgflow", "spatial_rgm", "reference_classifier", "potts_ebm", "sampler_bench", "rgm")


def paper_config() -> dict:
    return merged(default_config(), yaml.safe_load(PAPER.read_text()))


def probe_config() -> dict:
    return merged(paper_config(), yaml.safe_load(PROBE.read_text()))


# --- the probe overlay -------------------------------------------------------------------------


def test_the_probe_keeps_the_paper_models_and_batches_of_the_probed_experiments():
    paper, probe = paper_config(), probe_config()
    assert probe["probe"]["active"] and not paper["probe"]["active"]
    for name in PROBED:
        assert probe[name] == paper[name], f"config/probe.yaml changes {name}, which the probe runs at paper size"
    assert probe["resources"] == paper["resources"] and probe["data"] == paper["data"]
    assert probe["msds"] == paper["msds"]
    # the probe block decides every cut: the overlay changes no experiment's own keys
    assert set(yaml.safe_load(PROBE.read_text())) == {"preset", "probe"}


# --- the cost estimate against the requests ---------------------------------------------------


def cost_table() -> pd.DataFrame:
    if not COST.exists():
        pytest.fail(f"{COST.relative_to(ROOT)} is missing: run the probe (README, 'Paper preset cost') and copy "
                    "results/tables/paper_cost.csv there")
    return pd.read_csv(COST)


def test_the_committed_estimate_covers_every_probed_gpu_rule():
    table = cost_table()
    probed = set(table.loc[table["estimate"] == "probe", "rule"])
    dry = dry_run_jobs(["--configfile", str(PAPER), str(PROBE)])
    gpu_rules = {job["rule"] for job in dry if int(job["resources"].get("gpu", 0)) > 0}
    # every GPU rule of the probed experiments has an estimate; the others are listed as not probed
    ours = {rule for rule in gpu_rules if rule.startswith(PROBED)}
    assert ours and ours <= probed, sorted(ours - probed)
    listed = set(table["rule"])
    assert gpu_rules <= listed, f"GPU rules the cost table does not list: {sorted(gpu_rules - listed)}"
    trained = table[(table["estimate"] == "probe") & (table["family"] == "train")]
    assert len(trained) and (trained["steps_full"] > trained["steps_probe"]).all()
    assert (trained["steps_probe"] > 0).all() and (trained["flops_per_step"] > 0).all()


def test_every_paper_request_exceeds_the_estimate_with_margin():
    table = cost_table()
    config = paper_config()
    margins = config["probe"]["margins"]
    short = []
    for row in table[table["estimate"].isin(["probe", "measured"])].itertuples():
        family = config["resources"][row.family]
        hours = row.gpu_hours if family.get("gpu", 0) else row.hours_here
        if family["runtime"] < margins["runtime"] * hours * 60:
            short.append(f"{row.rule}/{row.job}: runtime {family['runtime']} min < {margins['runtime']} x "
                         f"{hours * 60:.0f} min")
        if family["mem_mb"] < margins["mem_mb"] * row.peak_host_mb:
            short.append(f"{row.rule}/{row.job}: mem_mb {family['mem_mb']} < {margins['mem_mb']} x "
                         f"{row.peak_host_mb:.0f} MB")
    assert not short, "\n".join(short)


# --- SLURM at paper scale ------------------------------------------------------------------------

FAKE_SBATCH = """#!{python}
import json, os, sys
log = os.environ["FAKE_SLURM_LOG"]
with open(log, "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
with open(log) as done:
    print(sum(1 for _ in done))
"""
FAKE_SACCTMGR = "#!/bin/sh\necho testaccount\n"


def dry_run_jobs(args: list[str], results: Path | None = None) -> list[dict]:
    """Every job of a dry run: rule, inputs, outputs and resources as Snakemake resolved them."""
    extra = ["--config", f"results_dir={results}"] if results else []
    run = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--nolock", "--cores", "256", *args, *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        name = re.match(r"(?:local)?rule (\w+):", block)
        if not name:
            continue

        def field(key: str) -> list[str]:
            found = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            return [item for item in found[1].split(", ") if item] if found else []

        resources = dict(item.split("=", 1) for item in field("resources") if "=" in item)
        jobs.append({"rule": name[1], "input": field("input"), "output": field("output"), "resources": resources,
                     "local": block.startswith("localrule")})
    return jobs


def family_of(job: dict, families: dict) -> str | None:
    """The resource family whose runtime, memory and GPUs a job asks for."""
    res = job["resources"]
    for name, spec in families.items():
        if (int(res.get("runtime", -1)) == spec["runtime"] and int(res.get("mem_mb", -1)) == spec["mem_mb"]
                and int(res.get("gpu", 0)) == spec.get("gpu", 0)):
            return name
    return None


def make_outputs(jobs: list[dict], keep: set[int]) -> set[str]:
    """Create the outputs of every job but those in ``keep`` and their downstream jobs, all
    with one modification time (so nothing looks newer than what it was made from)."""
    produced = {path: i for i, job in enumerate(jobs) for path in job["output"]}
    blocked = set(keep)
    changed = True
    while changed:
        changed = False
        for i, job in enumerate(jobs):
            if i not in blocked and any(produced.get(path) in blocked for path in job["input"]):
                blocked.add(i)
                changed = True
    made = set()
    stamp = time.time() - 3600
    for i, job in enumerate(jobs):
        if i in blocked:
            continue
        for path in job["output"]:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).touch()
            os.utime(path, (stamp, stamp))
            made.add(path)
    return made


def sbatch_calls(tmp_path: Path, results: Path, expected: int) -> list[list[str]]:
    """Run the paper preset (in a copy of the workflow, with its own .snakemake/) through a
    copy of profiles/slurm against the stand-in sbatch until ``expected`` jobs are
    submitted; return each call's arguments. Only modification times decide what runs:
    the stand-in outputs have no Snakemake metadata."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    (bin_dir / "sacctmgr").write_text(FAKE_SACCTMGR)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"].update(slurm_account="testaccount", slurm_partition="cpu_partition")
    profile["slurm-logdir"] = str(tmp_path / "slurm_logs")
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir(exist_ok=True)
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile))
    log = tmp_path / "sbatch.jsonl"
    log.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_LOG": str(log)}
    command = [sys.executable, "-m", "snakemake", "--profile", str(profile_dir), "--configfile", "config/paper.yaml",
               "--config", f"results_dir={results}", "--jobs", "1000", "--rerun-triggers", "mtime"]
    transcript = tmp_path / "snakemake.log"  # a file, not a pipe: a full pipe would stall Snakemake
    with transcript.open("w") as out:
        process = subprocess.Popen(command, cwd=copy_workflow(tmp_path), env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        try:
            while time.monotonic() < deadline and process.poll() is None:
                if len(log.read_text().splitlines()) >= expected:
                    break
                time.sleep(1)
        finally:  # the stand-in never runs a job: stop Snakemake (and only it) once it has submitted
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) >= expected, f"{len(calls)} of {expected} jobs submitted:\n{transcript.read_text()[-4000:]}"
    return calls


def rule_of(arguments: list[str]) -> str:
    comment = arguments[arguments.index("--comment") + 1]
    return re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", comment)[1]


def flags(arguments: list[str]) -> str:
    return " ".join(arg for arg in arguments if not arg.startswith("--wrap"))


@pytest.mark.parametrize("family", ["train", "evaluate"])
def test_paper_preset_asks_slurm_for_a_gpu_its_memory_and_minutes(family, tmp_path):
    results = tmp_path / "results"
    config = paper_config()
    families = config["resources"]
    jobs = dry_run_jobs(["--configfile", str(PAPER)], results)
    of_family = {i for i, job in enumerate(jobs) if family_of(job, families) == family}
    assert of_family, f"no {family} job in the paper preset"
    made = make_outputs(jobs, of_family)
    ready = [jobs[i] for i in of_family if all(path in made or not path.startswith(str(results))
                                               for path in jobs[i]["input"])]
    # every job whose inputs exist is submitted, the family's and the other families' alike
    expected = sum(1 for i, job in enumerate(jobs) if not job["local"] and not set(job["output"]) & made
                   and all(path in made for path in job["input"] if path.startswith(str(results))))
    calls = sbatch_calls(tmp_path, results, expected)
    spec = families[family]
    submitted = [call for call in calls if rule_of(call) in {job["rule"] for job in ready}]
    assert {rule_of(call) for call in submitted} == {job["rule"] for job in ready}
    for call in submitted:
        text = flags(call)
        assert "--gpus=1" in text or "--gpus 1" in text, text
        assert f"--mem {spec['mem_mb']}" in text and f"-t {spec['runtime']}" in text, text
        assert f"-p {spec['partition']}" in text and "-A testaccount" in text, text
    # a job of another family asks for no GPU; one without a partition goes to the profile's default
    family_of_rule = {job["rule"]: family_of(job, families) for job in jobs}
    others = [call for call in calls if family_of_rule.get(rule_of(call)) not in ("train", "evaluate")]
    for call in others:
        text = flags(call)
        wanted = families[family_of_rule[rule_of(call)]]["partition"] or "cpu_partition"
        assert "--gpus" not in text and f"-p {wanted}" in text, text
    report = {"family": family, "jobs": len(submitted), "rules": sorted({rule_of(c) for c in submitted}),
              "sbatch": shlex.join([arg for arg in submitted[0] if not arg.startswith("--wrap")])}
    print("paper preset on SLURM:", json.dumps(report, indent=1))


# --- the device check ------------------------------------------------------------------------------


def test_gpu_check_dry_run_builds_its_three_runs(tmp_path):
    out = tmp_path / "gpu_check"
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "GPU_CHECK_OUT": str(out)}, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("smoke_cpu", "smoke_cuda", "probe_cuda"):
        assert f"== {name}: snakemake" in run.stdout and f"results_dir={out}/{name}" in run.stdout
    assert "the comparison works" in run.stdout and not out.exists()
    assert subprocess.run(["bash", "benchmarks/gpu_check.sh", "--bogus"], cwd=ROOT, capture_output=True).returncode == 2


def test_device_check_compares_runs_and_flags_a_silent_cpu_fallback(tmp_path):
    from rgbench.summary.device_check import main, probe_steps, rule_speedups, speedups

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for name, seconds, device in (("cpu", 12.0, "cpu:x86_64 x2"), ("gpu", 3.0, "cuda:NVIDIA H100")):
        for job in ("seed-0", "seed-1"):
            bench = tmp_path / name / "benchmarks" / "demo_train" / f"{job}.tsv"
            bench.parent.mkdir(parents=True, exist_ok=True)
            bench.write_text(header + f"{seconds}\t0:00:10\t100\t0\t0\t0\t0\t0\t0\t{seconds}\n")
            metrics = tmp_path / name / "runs" / "demo" / job / "metrics.json"
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text(json.dumps({"device": device}))
    record = {"rule": "demo_train", "device": "cuda:NVIDIA H100",
              "fits": [{"batch_size": 64, "probe_micro_batch_size": None, "step_seconds": [0.5, 0.3],
                        "flops_per_step": 2e12, "peak_device_mb": 900.0}]}
    (tmp_path / "gpu" / "runs" / "demo" / "seed-0" / "probe_demo_train.json").write_text(json.dumps(record))
    rules = rule_speedups(speedups(tmp_path / "cpu", tmp_path / "gpu"))
    assert rules.to_dict("records") == [{"rule": "demo_train", "jobs": 2, "wall_s_cpu": 24.0, "wall_s_gpu": 6.0,
                                         "speedup": 4.0}]
    (step,) = probe_steps(tmp_path / "gpu").to_dict("records")
    assert step["step_s"] == pytest.approx(0.4) and step["tflops"] == pytest.approx(5.0)
    assert main([str(tmp_path / "cpu"), str(tmp_path / "gpu"), "--probe", str(tmp_path / "gpu"),
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "speedup_rules.csv").exists() and (tmp_path / "out" / "probe_gpu_steps.csv").exists()
    # a torch run of the GPU run that recorded a CPU: the check fails
    (tmp_path / "gpu" / "runs" / "demo" / "seed-1" / "metrics.json").write_text(json.dumps({"device": "cpu:x86"}))
    assert main([str(tmp_path / "cpu"), str(tmp_path / "gpu"), "--out", str(tmp_path / "out")]) == 1
