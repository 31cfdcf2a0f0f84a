# Helper functions of sampler_bench.smk (kept apart: snakemake --lint wants no defs beside rules).

def thrml_importable():
    return importlib.util.find_spec("thrml") is not None and importlib.util.find_spec("jax") is not None


def sampler_bench_rows():
    section = config["sampler_bench"]
    rows = []
    for implementation in section["implementations"]:
        if implementation == "thrml" and not thrml_importable():
            continue
        for chains in section["chains"]:
            if implementation == "sequential" and chains > section["sequential_max_chains"]:
                continue
            rows.append((implementation, chains))
    return rows


