# Helpers shared by every stage: paths, resources, and the experiment registry.
import json
from pathlib import Path

RESULTS = config["results_dir"].rstrip("/")

# experiment name -> {"runs": fn() -> metrics.json paths, "targets": fn() -> files,
#                     "figures": fn() -> figure files, "required_columns": [...]}
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


def register_experiment(name, runs, required_columns, figures=lambda: [], extra_targets=lambda: []):
    """Declare an experiment: its per-run metrics files feed tables/<name>.csv."""
    EXPERIMENTS[name] = {
        "runs": runs,
        "required_columns": list(required_columns),
        "figures": figures,
        "extra_targets": extra_targets,
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
    targets += claims_targets()
    targets += report_targets()
    return targets


def family_resources(family):
    """Resources of a rule family (data, train, evaluate, report) from the config.

    mem_mb grows with the attempt so that a retried job (profiles set `retries`) asks
    for more memory than the one that was killed.
    """
    spec = config["resources"][family]
    return {
        "mem_mb": lambda wildcards, attempt, base=spec["mem_mb"]: base * attempt,
        "runtime": spec["runtime"],
        "gpu": spec["gpu"],
    }


def family_threads(family):
    return config["resources"][family]["threads"]


def run_id(**params):
    """A readable run directory name from parameters, e.g. model-GloNet_depth-6_seed-0."""
    return "_".join(f"{key}-{value}" for key, value in params.items())


def as_json(value):
    """Pass a config block to a script as a JSON string (hashable, so edits rerun the job)."""
    return json.dumps(value, sort_keys=True)


# The pipeline's own reference MNIST classifier (trained by the reference_classifier
# experiment) and its test-set feature statistics: every sample-quality number uses them.
REFERENCE_MODEL = R("runs/reference_classifier/main/model.pt")
REFERENCE_STATS = R("runs/reference_classifier/main/reference_stats.npz")
