# Definitions of the rgm stage (kept apart from its rules: snakemake --lint wants no defs
# beside rules). Self-contained: everything rgm.smk uses is defined here.

RGM = config["rgm"]
RGM_MODEL_KEYS = ["quantiser", "hierarchy", "learning", "inference"]
# Two fitted models: official_test (SVD and bins fit on the stream) and paper_slice (fit on
# stream + slice, the demo's protocol); evaluation runs name the model they use.
RGM_FITS = ["official_test", "paper_slice"]
RGM_EVALUATIONS = {
    "official_test": "official_test",
    "official_test_first1000": "official_test",
    "validation": "official_test",
    "paper_slice": "paper_slice",
}
RGM_FIGURES = ["reconstructions", "generated", "accuracy_elbo", "diagnostics", "ablation"]
RGM_MODEL_DIR = R("runs/rgm/model_{fit}")
RGM_RUN = R("runs/rgm/{run_id}")
RGM_ABLATION_RUN = R("runs/rgm_ablation/{variant}")
RGM_DATA = settings(
    RGM["data"], "exemplars_per_class", "stream_start", "stream_size", "slice_start", "slice_size", "val_size"
)
# The hand-off of each rule: the rgm keys that decide its outputs.
RGM_FIT = {
    fit: settings(
        RGM,
        *RGM_MODEL_KEYS,
        data=settings(RGM_DATA, "exemplars_per_class", "stream_start", "stream_size", "slice_start", "slice_size"),
        protocol=fit,
    )
    for fit in RGM_FITS
}
RGM_RUNS = {
    run: settings(RGM, "seed", *RGM_MODEL_KEYS, data={**RGM_DATA, "test_limit": RGM["data"]["test_limit"]}, run=run)
    for run in RGM_EVALUATIONS
}
RGM_SAMPLES = settings(RGM, "seed", *RGM_MODEL_KEYS, "samples")
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
        data=RGM_DATA,
        preprocess=config["data"]["rgm"],
        ablation_stream=RGM["ablation"]["stream_size"],
        variant=spec["name"],
        overrides=spec["overrides"],
    )
    for spec in (RGM_ABLATION_VARIANTS[name] for name in RGM["ablation"]["run"])
}
RGM_ABLATION_DESCRIPTIONS = {name: RGM_ABLATION_VARIANTS[name]["description"] for name in RGM["ablation"]["run"]}


def rgm_model_file(fit, name):
    """A file of a fitted model's directory (model.npz, fit.json, stream.npz, samples.npz)."""
    return R(f"runs/rgm/model_{fit}/{name}")
