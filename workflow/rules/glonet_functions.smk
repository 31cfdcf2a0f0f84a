# Definitions of the glonet stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything glonet.smk uses is defined here.

GLONET = config["glonet"]
# Keys that decide a run's numbers; an extra grid (e.g. the official notebook's 32-feature
# setting) may override any of them for its own runs.
GLONET_TRAIN_KEYS = ["features", "epochs", "batch_size", "lr", "optimizer", "momentum", "train_limit", "test_limit"]
GLONET_FIGURES = ["accuracy_vs_depth", "learning_curves", "layer_usage", "early_exit"]


def glonet_runs():
    """run_id -> the run's whole hand-off {grid, model, depth, seed, <train keys>}, for the
    main grid and every extra grid. Each job gets only its own settings, so adding a depth
    or a seed to a grid does not rerun the jobs that already exist."""
    if not enabled("glonet"):
        return {}
    runs = {}
    grids = [dict(GLONET, name="main")] + [dict(GLONET, **grid) for grid in GLONET["extra_grids"]]
    for grid in grids:
        for model in grid["models"]:
            for depth in grid["depths"]:
                for seed in grid["seeds"]:
                    key = run_id(model=model, depth=depth, seed=seed)
                    if grid["name"] != "main":
                        key = f"{grid['name']}_{key}"
                    runs[key] = settings(
                        grid, *GLONET_TRAIN_KEYS, grid=grid["name"], model=model, depth=int(depth), seed=int(seed)
                    )
    return runs


GLONET_RUNS = glonet_runs()
GLONET_RUN = R("runs/glonet/{run_id}")


def glonet_files(name):
    return [f"{GLONET_RUN}/{name}".format(run_id=key) for key in GLONET_RUNS]
