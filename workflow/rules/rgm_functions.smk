# Definitions of the rgm stage (kept apart from its rules: snakemake --lint wants no defs
# beside rules). Self-contained: everything rgm.smk uses is defined here. The key lists
# and names restate rgbench.experiments.rgm (importing it here would slow every Snakemake
# start); tests/test_rgm.py builds every hand-off below into its run dataclass.

RGM = config["rgm"]
RGM_MODEL_KEYS = ["quantiser", "hierarchy", "learning", "inference"]  # RGMConfig's fields
# rgm.data keys per hand-off: a fit's (StreamData), the ablation's (SplitData) and an
# evaluation's (EvaluationData)
RGM_STREAM_KEYS = ["exemplars_per_class", "stream_start", "stream_size", "slice_start", "slice_size"]
RGM_SPLIT_KEYS = [*RGM_STREAM_KEYS, "val_size"]
RGM_EVALUATION_KEYS = [*RGM_SPLIT_KEYS, "test_limit"]
# The fitted models are config rgm.fits (each: the images its SVD and bins are fit on and its
# recipe as overrides); each evaluation protocol names the model it uses (PROTOCOL_FITS).
RGM_FITS = list(RGM["fits"])
RGM_PROTOCOLS = {
    "official_test": "official_test",
    "official_test_first1000": "official_test",
    "validation": "official_test",
    "paper_slice": "paper_slice",
    "paper_slice_demo": "paper_slice_demo",
    "stream": "official_test",
}
RGM_FITS_UNKNOWN = sorted({fit for fit in RGM_PROTOCOLS.values() if fit not in RGM["fits"]})
if RGM_FITS_UNKNOWN:
    raise ValueError(f"rgm.fits must define the models the evaluation protocols use; missing: {RGM_FITS_UNKNOWN}")
RGM_FIGURES = ["reconstructions", "generated", "accuracy_elbo", "diagnostics", "ablation"]
RGM_MODEL_DIR = R("runs/rgm/model_{fit}")
RGM_RUN = R("runs/rgm/{protocol}")
RGM_ABLATION_RUN = R("runs/rgm_ablation/{variant}")
# The hand-off of each rule: the rgm keys that decide its outputs.
RGM_FIT = {
    fit: settings(RGM, *RGM_MODEL_KEYS, data=settings(RGM["data"], *RGM_STREAM_KEYS), fit=fit, recipe=RGM["fits"][fit])
    for fit in RGM_FITS
}
RGM_EVALUATION = {
    protocol: settings(
        RGM,
        "seed",
        *RGM_MODEL_KEYS,
        data=settings(RGM["data"], *RGM_EVALUATION_KEYS),
        protocol=protocol,
        fit=fit,
        recipe=RGM["fits"][fit],
    )
    for protocol, fit in RGM_PROTOCOLS.items()
}
RGM_SAMPLES = settings(
    RGM, "seed", *RGM_MODEL_KEYS, "samples", fit="official_test", recipe=RGM["fits"]["official_test"]
)
RGM_ABLATION_VARIANTS = {spec["name"]: spec for spec in RGM["ablation"]["variants"]}
RGM_ABLATION_UNKNOWN = [name for name in RGM["ablation"]["run"] if name not in RGM_ABLATION_VARIANTS]
if RGM_ABLATION_UNKNOWN or RGM["ablation"]["run"][0] != "full":
    raise ValueError(
        f"rgm.ablation.run must start with 'full' and name only variants of rgm.ablation.variants; "
        f"unknown: {RGM_ABLATION_UNKNOWN}, defined: {sorted(RGM_ABLATION_VARIANTS)}"
    )
RGM_ABLATION = {
    spec["name"]: settings(
        RGM,
        *RGM_MODEL_KEYS,
        data=settings(RGM["data"], *RGM_SPLIT_KEYS),
        preprocess=config["data"]["rgm"],
        ablation_stream=RGM["ablation"]["stream_size"],
        variant=spec["name"],
        overrides=spec["overrides"],
    )
    for spec in (RGM_ABLATION_VARIANTS[name] for name in RGM["ablation"]["run"])
}
RGM_ABLATION_TABLE = {
    "descriptions": {name: RGM_ABLATION_VARIANTS[name]["description"] for name in RGM["ablation"]["run"]}
}


def rgm_model_file(fit, name):
    """A file of a fitted model's directory (model.npz, fit.json, stream.npz, samples.npz)."""
    return R(f"runs/rgm/model_{fit}/{name}")


def rgm_probe(rule_name, *job):
    """A job's probe block ({} unless probing): every rgm job is numpy code (family cpu) and
    stands for itself (no seeds to leave out)."""
    return probe_handoff(rule_name, "cpu", BENCH(rule_name, *job))


def rgm_fit_settings(wildcards):
    return RGM_FIT[wildcards.fit] | rgm_probe("rgm_train", wildcards.fit)


def rgm_evaluation_settings(wildcards):
    return RGM_EVALUATION[wildcards.protocol] | rgm_probe("rgm_evaluate", wildcards.protocol)


def rgm_ablation_settings(wildcards):
    return RGM_ABLATION[wildcards.variant] | rgm_probe("rgm_ablation", wildcards.variant)
