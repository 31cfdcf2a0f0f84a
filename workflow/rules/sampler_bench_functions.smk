# Definitions of the sampler_bench stage (kept apart from its rules: snakemake --lint wants
# no defs beside rules). Self-contained: everything sampler_bench.smk uses is defined here.

SAMPLER = config["sampler_bench"]
SAMPLER_RUN = R("runs/sampler_bench/{run_id}")


def sampler_bench_runs():
    """run_id -> what the row measures: {check: speed, implementation, chains} for every
    implementation and its chain counts; {check: energy, side, init, seed} for the THRML
    energy check (one fresh model and set of states per seed) and {check: energy_speed,
    side, seed} for the naive-vs-vectorised energy timing, on every lattice side."""
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
    for side in SAMPLER["energy_sides"]:
        for seed in SAMPLER["energy_seeds"]:
            for init in ("seed", "trained_scale"):
                runs[run_id(energy_side=side, init=init, seed=seed)] = {
                    "check": "energy",
                    "implementation": "thrml",
                    "side": int(side),
                    "init": init,
                    "seed": int(seed),
                }
            runs[run_id(energy_speed_side=side, seed=seed)] = {
                "check": "energy_speed",
                "implementation": "torch",
                "side": int(side),
                "seed": int(seed),
            }
    return runs


SAMPLER_RUNS = sampler_bench_runs()

# The one job's hand-off; in a probe with its probe block (a CPU benchmark: family cpu).
SAMPLER_SETTINGS = settings(
    SAMPLER, "seconds_per_run", "repeats", "seed", "energy_states", runs=SAMPLER_RUNS
) | probe_handoff("sampler_bench_run", "cpu", BENCH("sampler_bench_run", "all"))
