# Definitions of the sampler_bench stage (kept apart from its rules: snakemake --lint wants
# no defs beside rules). Self-contained: everything sampler_bench.smk uses is defined here.

SAMPLER = config["sampler_bench"]
SAMPLER_RUN = R("runs/sampler_bench/{run_id}")


def sampler_bench_runs():
    """run_id -> what the row measures: {check: speed, implementation, chains} for every
    implementation and its chain counts, and {check: energy, grid, init, seed} for the
    THRML energy check (one fresh model and set of states per seed)."""
    if not enabled("sampler_bench"):
        return {}
    runs = {}
    for implementation, counts in SAMPLER["chains"].items():
        for chains in counts:
            runs[run_id(impl=implementation, chains=chains)] = {
                "check": "speed",
                "implementation": implementation,
                "chains": int(chains),
            }
    for grid in SAMPLER["energy_grids"]:
        for init in ("seed", "trained_scale"):
            for seed in SAMPLER["energy_seeds"]:
                runs[run_id(energy_grid=grid, init=init, seed=seed)] = {
                    "check": "energy",
                    "implementation": "thrml",
                    "grid": int(grid),
                    "init": init,
                    "seed": int(seed),
                }
    return runs


SAMPLER_RUNS = sampler_bench_runs()
