# Helper functions of glonet.smk (kept apart: snakemake --lint wants no defs beside rules).

def glonet_runs():
    """run_id -> {grid, model, depth, seed, <train keys>} for the main and extra grids.

    Each job gets only its own settings as params, so adding a depth or a seed to the
    grid does not rerun the jobs that already exist.
    """
    if not enabled("glonet"):
        return {}
    runs = {}
    grids = [dict(GLONET, name="main")] + [dict(GLONET, **grid) for grid in GLONET.get("extra_grids", [])]
    for grid in grids:
        for model in grid["models"]:
            for depth in grid["depths"]:
                for seed in grid["seeds"]:
                    key = run_id(model=model, depth=depth, seed=seed)
                    if grid["name"] != "main":
                        key = f"{grid['name']}_{key}"
                    runs[key] = dict({k: grid[k] for k in GLONET_TRAIN_KEYS},
                                     grid=grid["name"], model=model, depth=int(depth), seed=int(seed))
    return runs


def glonet_files(name, grid=None):
    return [R(f"runs/glonet/{key}/{name}") for key, spec in GLONET_RUNS.items() if grid is None or spec["grid"] == grid]


