# Definitions of the sampler_bench stage (kept apart from its rules: snakemake --lint wants
# no defs beside rules). Self-contained: everything sampler_bench.smk uses is defined here.
import importlib.util

SAMPLER = config["sampler_bench"]
SAMPLER_RUN = R("runs/sampler_bench/{run_id}")


def thrml_importable():
    return importlib.util.find_spec("thrml") is not None and importlib.util.find_spec("jax") is not None


def sampler_bench_runs():
    """run_id -> hand-off {implementation, chains, timing settings}; THRML rows only where
    the thrml package is importable, the slow sequential sampler only up to its cap."""
    if not enabled("sampler_bench"):
        return {}
    runs = {}
    for implementation in SAMPLER["implementations"]:
        if implementation == "thrml" and not thrml_importable():
            continue
        for chains in SAMPLER["chains"]:
            if implementation == "sequential" and chains > SAMPLER["sequential_max_chains"]:
                continue
            runs[run_id(impl=implementation, chains=chains)] = settings(
                SAMPLER, "seconds_per_run", "repeats", "seed", implementation=implementation, chains=int(chains)
            )
    return runs


SAMPLER_RUNS = sampler_bench_runs()
