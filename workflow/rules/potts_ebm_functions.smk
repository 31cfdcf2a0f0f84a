# Definitions of the potts_ebm stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything potts_ebm.smk uses is defined here.

POTTS = config["potts_ebm"]
POTTS_RUN = R("runs/potts_ebm/{run_id}")


def potts_runs():
    """run_id -> the run's training hand-off: model, seed, data limits and the training
    block it uses (`rbm` for potts_rbm, `pcd` for the grid models). Analysis settings are
    handed to the analysis rule alone, so editing them never retrains."""
    runs = {}
    for model in POTTS["models"]:
        for seed in POTTS["seeds"]:
            block = POTTS["rbm"] if model == "potts_rbm" else POTTS["pcd"]
            runs[run_id(model=model, seed=seed)] = settings(
                POTTS, "train_limit", "test_limit", "smoothing", model=model, seed=int(seed), pcd=block
            )
    return runs


POTTS_RUNS = potts_runs() if enabled("potts_ebm") else {}


def potts_files(name, first_seed_only=False, trained_only=False):
    """A file of every run (or of each model's first-seed run, or of the trained models')."""
    files = []
    for key, spec in POTTS_RUNS.items():
        if first_seed_only and spec["seed"] != POTTS["seeds"][0]:
            continue
        if trained_only and spec["model"] == "independent":
            continue
        files.append(f"{POTTS_RUN}/{name}".format(run_id=key))
    return files
