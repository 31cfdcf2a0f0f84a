"""Profiles, and the pipeline on a real (one-node) SLURM cluster.

The profile tests run everywhere. The integration test needs the cluster that
`.ci/slurm_setup.sh` installs and starts; it runs only as root with RGBENCH_SLURM=1
(CI does both) and stops the daemons by PID when the module is done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import copy_workflow, default_config, merged

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
RULES = ROOT / "workflow" / "rules"
GPU_FAMILIES = ("train", "evaluate")
PLACEHOLDER = "CHANGE_ME"
# What a copy of the workflow needs to run.
# What the integration test runs: the whole smoke DAG unless told otherwise.
SLURM_TARGET = os.environ.get("RGBENCH_SLURM_TARGET", "all")
SLURM_TIMEOUT = float(os.environ.get("RGBENCH_SLURM_TIMEOUT", "1800"))


def load_profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def rule_families() -> dict[str, str]:
    """{rule name pattern: resource family} for every rule that takes family_resources(...).

    A rule made in a loop (`rule:` with `name: f"glonet_train_{GRID}"`) gives a pattern in
    which each f-string field matches any word, so its jobs are not silently left out."""
    header = re.compile(r"^\s*(?:rule|checkpoint)(?:\s+(\w+))?\s*:\s*$", re.M)
    families = {}
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        starts = list(header.finditer(text))
        for i, match in enumerate(starts):
            block = text[match.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
            family = re.search(r"family_resources\(\s*[\"'](\w+)[\"']\s*\)", block)
            if not family:
                continue
            if match[1]:
                families[re.escape(match[1])] = family[1]
            else:
                named = re.search(r"name:\s*f?[\"']([^\"']+)[\"']", block)
                assert named, f"{smk.name}: an unnamed rule takes family_resources"
                parts = re.split(r"\{[^}]*\}", named[1])
                families[r"\w+".join(re.escape(part) for part in parts)] = family[1]
    return families


def family_of(rule: str, families: dict[str, str] | None = None) -> str | None:
    """The resource family of a rule (or of a job's rule), None for rules without one."""
    for pattern, family in (families if families is not None else rule_families()).items():
        if re.fullmatch(pattern, rule):
            return family
    return None


def is_gpu_rule(rule: str) -> bool:
    """Whether the rule's code can use a GPU: the only rules that may ask for one."""
    return family_of(rule) in GPU_FAMILIES


def test_rules_made_in_loops_have_their_family():
    assert family_of("glonet_train_seed") == "train"
    assert family_of("glonet_train_notebook") == "train"
    assert family_of("glonet_figures") != "train"
    assert family_of("not_a_rule") is None


# --- profiles (no cluster needed) -------------------------------------------------


def test_only_the_slurm_profile_names_an_executor():
    # A profiles/default with an executor would make a plain `snakemake --cores all`
    # submit to SLURM.
    for config in PROFILES.glob("*/config.y*ml"):
        profile = yaml.safe_load(config.read_text()) or {}
        if config.parent.name == "slurm":
            continue
        assert "executor" not in profile and "cluster" not in profile, config
        assert not any(key.startswith("slurm") for key in profile), config


def test_local_profile_limits_gpus_and_sets_no_placeholders():
    profile = load_profile("local")
    assert "gpu" in profile["resources"]
    assert PLACEHOLDER not in (PROFILES / "local" / "config.yaml").read_text()


def test_slurm_profile_has_marked_placeholders_retries_and_latency_wait():
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    defaults = profile["default-resources"]
    assert PLACEHOLDER in str(defaults["slurm_account"])
    assert PLACEHOLDER in str(defaults["slurm_partition"])
    assert profile["retries"] >= 1
    assert profile["latency-wait"] >= 30
    assert profile.get("rerun-incomplete") is True
    # The sizes come from the config's resources block; a mem_mb here would
    # override the attempt-scaled memory of every retried job.
    for rule, res in (profile.get("set-resources") or {}).items():
        assert not {"mem_mb", "runtime", "gpu"} & set(res), f"set-resources {rule} overrides config sizes"


def test_gpu_allocations_are_said_in_one_place():
    """Which rules may hold a GPU is their family (rule files); how many GPUs and which
    partition is the config's resources block. The profile names no rule."""
    assert family_of("reference_classifier_train") == "train"
    assert family_of("rgm_train") == "cpu" and family_of("sampler_bench_run") == "cpu"
    assert family_of("potts_ebm_train") == "cpu"  # PCD runs on the CPU whatever the device: no GPU to hold
    assert not load_profile("slurm").get("set-resources"), "profiles/slurm routes rules itself"


def test_profiles_are_valid_snakemake_options(tmp_path):
    # A dry run parses every profile key as a command-line option and resolves the
    # resources of every job; a misspelt key fails here, not on the cluster.
    for name in ("local", "slurm"):
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "reference_classifier", "--dry-run", "--quiet", "rules",
             "--profile", str(PROFILES / name), "--configfile", "config/smoke.yaml",
             "--config", f"results_dir={tmp_path / name}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, f"profile {name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def dry_run_jobs(config_file: str, tmp_path: Path) -> list[dict]:
    """Every job of the full DAG with the threads and resources Snakemake resolved."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", "--cores", "256", "--configfile", config_file,
         "--config", f"results_dir={tmp_path / 'results'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        name = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if not name or not resources:
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        values = dict(item.split("=", 1) for item in resources[1].split(", ") if "=" in item)
        jobs.append({"rule": name[1], "threads": int(threads[1]) if threads else 1, **values})
    return jobs


@pytest.mark.parametrize("config_file", ["config/paper.yaml", "config.yaml"])
def test_every_job_takes_threads_memory_runtime_and_gpus_from_its_family(config_file, tmp_path):
    sizes = default_config()["resources"]
    if config_file != "config.yaml":
        sizes = merged({"resources": sizes}, yaml.safe_load((ROOT / config_file).read_text()))["resources"]
    families = rule_families()
    jobs = [job for job in dry_run_jobs(config_file, tmp_path) if family_of(job["rule"], families)]
    assert {job["rule"] for job in jobs} >= {"reference_classifier_train", "mnist_cache", "glonet_train_seed"}
    wrong = set()
    for job in jobs:
        family = family_of(job["rule"], families)
        want = sizes[family]
        got = {"threads": job["threads"], "mem_mb": int(job["mem_mb"]), "runtime": int(job["runtime"]),
               "gpu": int(job.get("gpu", 0)), "partition": job.get("slurm_partition")}
        want = {**want, "gpu": want.get("gpu", 0)}
        wrong |= {f"{job['rule']} ({family}): {key}={got[key]}, config says {want[key]}"
                  for key in got if got[key] != want[key]}
    assert not wrong, "\n".join(sorted(wrong))
    gpu_rules = {job["rule"] for job in jobs if int(job.get("gpu", 0)) > 0}
    if "paper" in config_file:
        # One GPU per training and evaluation job, none for the rest.
        assert gpu_rules == {r for r in {job["rule"] for job in jobs} if family_of(r, families) in GPU_FAMILIES}
    else:
        assert not gpu_rules


# --- a real SLURM cluster -----------------------------------------------------------


def slurm_available() -> tuple[bool, str]:
    if os.environ.get("RGBENCH_SLURM") != "1":
        return False, "set RGBENCH_SLURM=1 to run the SLURM integration test"
    if os.geteuid() != 0:
        return False, "the SLURM integration test runs as root (it starts daemons)"
    if shutil.which("sinfo") is None:
        return False, "SLURM is not installed (run .ci/slurm_setup.sh)"
    return True, ""


def node_idle() -> bool:
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return result.returncode == 0 and set(result.stdout.split()) == {"idle"}


@pytest.fixture(scope="module")
def slurm_cluster():
    ok, why = slurm_available()
    if not ok:
        pytest.skip(why)
    if not node_idle():
        subprocess.run([str(ROOT / ".ci" / "slurm_setup.sh")], check=True, timeout=300)
    yield
    # Stop every daemon the setup script started (by the PIDs it recorded).
    subprocess.run([str(ROOT / ".ci" / "slurm_teardown.sh")], check=False, timeout=120)


def cluster_profile(tmp_path: Path) -> Path:
    """The shipped SLURM profile with this test cluster's values in its placeholders."""
    profile = load_profile("slurm")
    defaults = profile["default-resources"]
    # No accounting database here: an account cannot be validated, so give none.
    del defaults["slurm_account"]
    defaults["slurm_partition"] = "cpu"
    # Without slurmdbd the default status command (sacct) never sees the jobs.
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["slurm-logdir"] = str(tmp_path / "slurm_logs")
    profile["slurm-keep-successful-logs"] = True
    profile["latency-wait"] = 5
    profile["retries"] = 0
    profile["jobs"] = 8
    path = tmp_path / "profile" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    assert PLACEHOLDER not in path.read_text()
    return path.parent



def gpu_overlay(tmp_path: Path) -> Path:
    """One GPU per train / evaluate job in this cluster's gpu partition (as the paper preset asks)."""
    resources = {family: {"gpu": 1, "partition": "gpu"} for family in GPU_FAMILIES}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({"resources": resources}))
    return path


def sbatch_calls(log: str) -> dict[str, list[str]]:
    """{rule: [sbatch flags, one entry per submitted job]} from Snakemake's --verbose log."""
    calls: dict[str, list[str]] = {}
    for line in log.splitlines():
        if "sbatch call:" not in line:
            continue
        flags = line.split("sbatch call:", 1)[1].split(" --wrap=", 1)[0].strip()
        rule = re.search(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'?(?:\s|$)", flags)
        assert rule, f"no rule in sbatch call {flags}"
        calls.setdefault(rule[1], []).append(flags)
    return calls


def slurm_jobs(logdir: Path) -> list[dict[str, str]]:
    """scontrol's record of every job whose log went to ``logdir``."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("StdOut", "").startswith(str(logdir)):
            jobs.append(fields)
    return jobs


@pytest.mark.slurm
def test_smoke_dag_runs_on_slurm_with_a_gpu_per_training_job(slurm_cluster, tmp_path):
    profile = cluster_profile(tmp_path)
    work = copy_workflow(tmp_path)
    results = work / "results"
    log_path = tmp_path / "snakemake.log"  # streamed, so a timed-out run still leaves its log
    started = time.monotonic()
    with log_path.open("w") as log_file:
        run = subprocess.run(
            [sys.executable, "-m", "snakemake", *SLURM_TARGET.split(), "--profile", str(profile),
             "--configfile", "config/smoke.yaml", str(gpu_overlay(tmp_path)), "--verbose"],
            cwd=work, stdout=log_file, stderr=subprocess.STDOUT, text=True, timeout=SLURM_TIMEOUT,
        )
    wall = time.monotonic() - started
    log = log_path.read_text()
    assert run.returncode == 0, log[-6000:]

    assert (results / "runs" / "reference_classifier" / "seed-0" / "metrics.json").exists()
    calls = sbatch_calls(log)
    assert calls, "no job was submitted with sbatch"
    submitted_gpu = {rule for rule in calls if is_gpu_rule(rule)}
    assert "reference_classifier_train" in submitted_gpu
    for rule, flag_list in calls.items():
        for flags in flag_list:
            if is_gpu_rule(rule):
                assert "--gpus=1" in flags and "-p gpu" in flags, f"{rule}: {flags}"
            else:
                assert "--gpus" not in flags and "-p cpu" in flags, f"{rule}: {flags}"

    # SLURM's own record agrees: GPU jobs held a GPU in the gpu partition, all completed.
    jobs = slurm_jobs(tmp_path / "slurm_logs")
    assert len(jobs) == sum(len(v) for v in calls.values())
    for job in jobs:
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"])[1]
        assert job["JobState"] == "COMPLETED", job
        if is_gpu_rule(rule):
            assert job["Partition"] == "gpu" and "gpu:1" in job.get("TresPerJob", ""), job
        else:
            assert job["Partition"] == "cpu" and "gpu" not in job.get("TresPerJob", ""), job

    report = {
        "target": SLURM_TARGET,
        "wall_seconds": round(wall, 1),
        "jobs": len(jobs),
        "gpu_jobs": sorted(submitted_gpu),
        "training_sbatch_flags": calls["reference_classifier_train"][0],
    }
    print("SLURM run:", json.dumps(report, indent=1))
    out = os.environ.get("RGBENCH_SLURM_REPORT")
    if out:
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
