# Helper functions of potts_ebm.smk (kept apart: snakemake --lint wants no defs beside rules).

def potts_section():
    return config["potts_ebm"]


def potts_runs():
    section = potts_section()
    return [f"{POTTS_RUN}/metrics.json".format(model=m, seed=s) for m in section["models"] for s in section["seeds"]]


def potts_train_settings(wildcards):
    """Only what decides the trained weights, so editing analysis settings never retrains."""
    section = potts_section()
    keys = ("limit_train", "limit_test", "smoothing", "pcd", "rbm")
    return as_json({k: section[k] for k in keys})


def potts_samples_files():
    section = potts_section()
    return [f"{POTTS_RUN}/samples.npz".format(model=m, seed=section["seeds"][0]) for m in section["models"]]


def potts_epoch_files():
    section = potts_section()
    return [f"{POTTS_RUN}/epochs.npz".format(model=m, seed=section["seeds"][0])
            for m in section["models"] if m != "independent"]


