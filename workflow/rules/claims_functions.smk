# Helper functions of claims.smk (kept apart: snakemake --lint wants no defs beside rules).

def claims_files():
    """The claims files, globbed when the DAG is built (so a new file is picked up)."""
    return sorted(str(path) for path in CLAIMS_DIR.glob("*.yaml"))


def claims_tables():
    """Experiment -> table path, for every registered experiment this config runs."""
    return {name: R(f"tables/{name}.csv") for name in EXPERIMENTS if enabled(name)}


def claims_targets():
    return [R("tables/claims.csv")]


