# Definitions of the spatial_rgm stage (kept apart from its rules: snakemake --lint wants
# no defs beside rules). Self-contained: everything spatial_rgm.smk uses is defined here.

SPATIAL = config["spatial_rgm"]
SPATIAL_RUN = R("runs/spatial_rgm/{run_id}")
SPATIAL_FIGURES = ["abstraction", "conditional_samples", "locality"]
# run_id -> the training hand-off; one run per (epochs, seed).
SPATIAL_RUNS = {
    run_id(epochs=epochs, seed=seed): settings(
        SPATIAL, "train_limit", "train", "model", "loss", "gumbel", epochs=int(epochs), seed=int(seed)
    )
    for epochs in SPATIAL["epochs"]
    for seed in SPATIAL["seeds"]
}
SPATIAL_EVALUATE = settings(SPATIAL, "test_limit", "evaluation")


def spatial_files(name):
    return [f"{SPATIAL_RUN}/{name}".format(run_id=key) for key in SPATIAL_RUNS]


def spatial_figure_arrays():
    """The figures show the run of the first epochs value and the first seed."""
    first = run_id(epochs=SPATIAL["epochs"][0], seed=SPATIAL["seeds"][0])
    return f"{SPATIAL_RUN}/arrays.npz".format(run_id=first)
