# Definitions of the glonet stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything glonet.smk uses is defined here.

GLONET = config["glonet"]
# A grid's recipe: the keys that decide its runs' numbers (models, depths and seeds
# enumerate the runs instead). These lists restate RECIPE_KEYS and MEASURE_KEYS of
# rgbench.experiments.glonet (the fields of its GloNetRunConfig) without importing torch
# into every Snakemake start; tests/test_glonet.py fails when they drift apart.
GLONET_RECIPE_KEYS = [
    "depth_counts",
    "features",
    "init",
    "negative_slope",
    "input_mean",
    "input_std",
    "mlp_output",
    "residual_start",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "epochs",
    "train_limit",
    "test_limit",
    "val_every_steps",
    "val_curve_images",
]
# How every run is measured (the section's top-level keys).
GLONET_MEASURE_KEYS = ["usage_fraction", "convergence_levels", "exit_tolerance"]
GLONET_FIGURES = ["accuracy_vs_depth", "learning_curves", "layer_usage", "early_exit"]
GLONET_CLAIMS = str(Path(workflow.basedir) / "src" / "rgbench" / "claims" / "glonet.yaml")


def glonet_grids():
    """The enabled grids, by name (none when the experiment is off)."""
    if not enabled("glonet"):
        return {}
    return {name: grid for name, grid in GLONET["grids"].items() if grid["enabled"]}


def glonet_run_id(grid, model, depth, seed):
    return run_id(grid=grid, model=model, depth=depth, seed=seed)


def glonet_runs():
    """run_id -> the run's whole hand-off {grid, model, depth, seed, <recipe>, <measures>},
    for every enabled grid (a probe: one seed each, see probe_subset). Run ids are derived
    here and nowhere else."""
    runs = {}
    measures = {key: GLONET[key] for key in GLONET_MEASURE_KEYS}
    for name, grid in glonet_grids().items():
        for model in grid["models"]:
            for depth in grid["depths"]:
                for seed in probe_subset(grid["seeds"]):
                    runs[glonet_run_id(name, model, depth, seed)] = settings(
                        grid,
                        *GLONET_RECIPE_KEYS,
                        grid=name,
                        model=model,
                        depth=int(depth),
                        seed=int(seed),
                        **measures,
                    )
    return runs


GLONET_GRIDS = glonet_grids()
GLONET_RUNS = glonet_runs()
GLONET_RUN = R("runs/glonet/{run_id}")


def glonet_files(name):
    return [f"{GLONET_RUN}/{name}".format(run_id=key) for key in GLONET_RUNS]


def glonet_job_outputs(grid, name):
    """The files one job of ``grid`` writes: one per depth, with {model} and {seed} left
    as the job's wildcards."""
    return [
        f"{GLONET_RUN}/{name}".format(run_id=glonet_run_id(grid, "{model}", depth, "{seed}"))
        for depth in GLONET_GRIDS[grid]["depths"]
    ]


def glonet_job(grid, model, seed):
    """A job's hand-off: the runs of (grid, model, seed), one per depth (and, in a probe,
    the probe block: the job stands for the grid's seeds that the probe leaves out)."""
    ids = [glonet_run_id(grid, model, depth, seed) for depth in GLONET_GRIDS[grid]["depths"]]
    seeds = GLONET_GRIDS[grid]["seeds"]
    rule_name = f"glonet_train_{grid}"
    benchmark = BENCH(rule_name, f"model-{model}_seed-{seed}")
    probe = probe_handoff(rule_name, "train", benchmark, len(seeds) // len(probe_subset(seeds)))
    return {"runs": {key: GLONET_RUNS[key] for key in ids}, **probe}
