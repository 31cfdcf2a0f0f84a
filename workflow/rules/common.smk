# Helpers shared by every stage: paths, the one config hand-off, run ids, resources and
# the experiment registry. Only definitions live here; rules live in the stage files.
import re
from pathlib import Path

RESULTS = config["results_dir"].rstrip("/")

# experiment name -> {"runs": fn() -> metrics.json paths, "required_columns": [...],
#                     "figures": fn() -> figure files, "extra_targets": fn() -> files}
EXPERIMENTS = {}


def R(path):
    """A path under the results directory."""
    return f"{RESULTS}/{path}"


def LOG(rule_name, *parts):
    return R(f"logs/{Path(rule_name, *parts).as_posix()}.log")


def BENCH(rule_name, *parts):
    return R(f"benchmarks/{Path(rule_name, *parts).as_posix()}.tsv")


def enabled(section):
    return bool(config.get(section, {}).get("enabled", False))


def canonical(value):
    """A config value with every mapping's keys sorted, so that Snakemake (which compares
    params by their repr) sees two equal settings as equal whatever their key order."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def settings(section, *keys, **extra):
    """The one config hand-off of a job (`params: config=...`): exactly the keys that
    decide its outputs, so editing any other key never reruns it.

    ``section`` is a config section name or a mapping; ``extra`` adds derived values.
    """
    block = config[section] if isinstance(section, str) else section
    missing = [key for key in keys if key not in block]
    if missing:
        raise KeyError(f"config section {section!r} has no keys {missing}")
    return canonical({**{key: block[key] for key in keys}, **extra})


# The paper preset's probe (config `probe:`, docs/paper-preset.md). Its block joins a
# training or evaluation job's hand-off only while probing, so the real runs' hand-offs,
# and so their outputs, never change with it.
PROBE = config["probe"]


def probing():
    return bool(PROBE["active"])


def probe_handoff(rule_name, family, benchmark, represents=1):
    """The `probe` block of a job's hand-off ({} unless probing): its steps and evaluation
    batches, the job that measures (rule, resource family, benchmark file) and how many
    jobs of the real run it stands for."""
    if not probing():
        return {}
    block = {key: PROBE[key] for key in ("steps", "eval_batches", "max_micro_batch")}
    job = {"rule": rule_name, "family": family, "benchmark": benchmark, "represents": int(represents)}
    return {"probe": {**block, **job}}


def probe_subset(values):
    """The values a probe runs of a list of same-sized runs (seeds, say): the first one
    with `one_per_shape`, all of them otherwise and outside a probe."""
    values = list(values)
    return values[:1] if probing() and PROBE["one_per_shape"] else values


def figure_settings(**extra):
    """The hand-off of a figure rule: the shared `figures` settings plus what this
    figure alone reads (``extra``: figure-only keys, the runs it shows)."""
    return canonical({**config["figures"], **extra})


def run_id(**params):
    """A readable run directory name from parameters, e.g. model-GloNet_depth-6_seed-0."""
    return "_".join(f"{key}-{value}" for key, value in params.items())


def one_of(names):
    """A wildcard constraint that matches exactly these names (never an empty regex)."""
    return "|".join(re.escape(str(name)) for name in names) or "no-such-run"


def register_experiment(name, runs, required_columns, figures=lambda: [], extra_targets=lambda: [], own_table=False):
    """Declare an experiment: its per-run metrics files feed tables/<name>.csv (written by
    the experiment's own rule instead of experiment_table when ``own_table``)."""
    EXPERIMENTS[name] = {
        "runs": runs,
        "required_columns": list(required_columns),
        "figures": figures,
        "extra_targets": extra_targets,
        "own_table": own_table,
    }


def experiment_targets(name):
    if not enabled(name):
        return []
    spec = EXPERIMENTS[name]
    return [R(f"tables/{name}.csv")] + list(spec["figures"]()) + list(spec["extra_targets"]())


def enabled_experiments():
    return [name for name in EXPERIMENTS if enabled(name)]


def all_figures():
    return [f for name in enabled_experiments() for f in EXPERIMENTS[name]["figures"]()]


def all_targets():
    targets = list(data_targets())
    for name in enabled_experiments():
        targets += experiment_targets(name)
    return targets + claims_targets() + report_targets()


# Rule families (config `resources:`). The family says what a rule's code can use: only
# `train` and `evaluate` rules run torch code that takes a GPU when one is present, so
# only they carry a `gpu` resource; numpy models and CPU benchmarks are `cpu`.
GPU_FAMILIES = ("train", "evaluate")


def family_resources(family):
    """Resources of a rule family from the config.

    mem_mb grows with the attempt so that a retried job (profiles set `retries`) asks for
    more memory than the one that was killed. `partition` becomes the SLURM executor's
    `slurm_partition` when set (null leaves the profile's default).
    """
    spec = config["resources"][family]
    resources = {
        "mem_mb": lambda wildcards, attempt, base=spec["mem_mb"]: base * attempt,
        "runtime": spec["runtime"],
    }
    if family in GPU_FAMILIES:
        resources["gpu"] = spec["gpu"]
    if spec.get("partition"):
        resources["slurm_partition"] = spec["partition"]
    return resources


def family_threads(family):
    return config["resources"][family]["threads"]
