# Helper functions of rgm.smk (kept apart: snakemake --lint wants no defs beside rules).

def rgm_run(path):
    return R(f"runs/rgm/{path}")


