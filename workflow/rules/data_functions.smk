# Helper functions of data.smk (kept apart: snakemake --lint wants no defs beside rules).

def MSDS(variant):
    return R(f"data/msds/{variant}.npz")


def msds_variants_needed():
    return config["msds"]["variants"] if (config["msds"]["enabled"] or enabled("rgflow")) else []


def data_targets():
    return [MNIST28, MNIST32_RGM, MNIST4, MNIST_SUBSETS] + [MSDS(v) for v in msds_variants_needed()]


