# Definitions of the spatial_rgm stage (kept apart from its rules: snakemake --lint wants
# no defs beside rules). Self-contained: everything spatial_rgm.smk uses is defined here.

SPATIAL = config["spatial_rgm"]
SPATIAL_RUN = R("runs/spatial_rgm/{run_id}")
# Figures of one run (the first seed of the first grid), drawn from its saved arrays.
SPATIAL_RUN_FIGURES = ["abstraction", "conditional_samples", "locality"]
# The figure over all runs: every seed's curves and measures, mean +- sd per grid.
SPATIAL_FIGURES = SPATIAL_RUN_FIGURES + ["seeds"]
SPATIAL_CLAIMS = Path(workflow.basedir) / "src" / "rgbench" / "claims" / "spatial_rgm.yaml"
# The keys of a grid that decide its runs' numbers (a grid also lists its epochs and seeds).
SPATIAL_RECIPE_KEYS = ["batch_size", "lr", "loss", "gumbel"]
# run_id -> the training hand-off; one run per (grid, epochs, seed). A grid without
# seeds (the origin recipe on the default preset) has no runs; a probe runs one seed.
SPATIAL_RUNS = {
    run_id(grid=name, epochs=epochs, seed=seed): settings(
        grid,
        *SPATIAL_RECIPE_KEYS,
        grid=name,
        epochs=int(epochs),
        seed=int(seed),
        train_limit=SPATIAL["train_limit"],
        model=SPATIAL["model"],
    )
    for name, grid in SPATIAL["grids"].items()
    for epochs in grid["epochs"]
    for seed in probe_subset(grid["seeds"])
}
SPATIAL_EVALUATE = settings(SPATIAL, "test_limit", "evaluation")


def spatial_probe(rule_name, family, run):
    """A job's probe block ({} unless probing): it stands for its grid's seeds."""
    seeds = SPATIAL["grids"][SPATIAL_RUNS[run]["grid"]]["seeds"]
    return probe_handoff(rule_name, family, BENCH(rule_name, run), len(seeds) // len(probe_subset(seeds)))


def spatial_train_settings(wildcards):
    return SPATIAL_RUNS[wildcards.run_id] | spatial_probe("spatial_rgm_train", "train", wildcards.run_id)


def spatial_evaluate_settings(wildcards):
    return SPATIAL_EVALUATE | spatial_probe("spatial_rgm_evaluate", "evaluate", wildcards.run_id)


def spatial_files(name):
    return [f"{SPATIAL_RUN}/{name}".format(run_id=key) for key in SPATIAL_RUNS]


def spatial_figure_arrays():
    """The one-run figures show the first run: the first grid's first epochs value and seed."""
    if not SPATIAL_RUNS:
        raise ValueError("spatial_rgm is enabled but no grid lists a seed: give a grid `seeds: [0]`")
    return f"{SPATIAL_RUN}/arrays.npz".format(run_id=next(iter(SPATIAL_RUNS)))
