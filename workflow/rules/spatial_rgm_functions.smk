# Helper functions of spatial_rgm.smk (kept apart: snakemake --lint wants no defs beside rules).

def spatial_rgm_runs():
    return [f"{SPATIAL_RGM_RUN}/metrics.json".format(epochs=epochs, seed=seed)
            for epochs in SPATIAL_RGM["epochs"] for seed in SPATIAL_RGM["seeds"]]


def spatial_rgm_arrays():
    """The figures show the run of the first epochs value and the first seed."""
    return f"{SPATIAL_RGM_RUN}/arrays.npz".format(epochs=SPATIAL_RGM["epochs"][0], seed=SPATIAL_RGM["seeds"][0])


