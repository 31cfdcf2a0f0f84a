# Definitions of the rgm stage (kept apart from its rules: snakemake --lint wants no defs
# beside rules). Self-contained: everything rgm.smk uses is defined here.

RGM = config["rgm"]
RGM_PROTOCOLS = ["official_test", "paper_slice"]
RGM_FIGURES = ["reconstructions", "generated", "accuracy_elbo", "accepted"]
RGM_MODEL_DIR = R("runs/rgm/model")
RGM_RUN = R("runs/rgm/{run_id}")
# The hand-off of each rule: the rgm keys that decide its outputs.
RGM_TRAIN = settings(
    RGM,
    "seed",
    "hierarchy",
    "learning",
    data=settings(RGM["data"], "exemplars_per_class", "stream_start", "stream_size"),
)
RGM_RUNS = {
    protocol: settings(RGM, "seed", "hierarchy", "learning", "data", "inference", protocol=protocol)
    for protocol in RGM_PROTOCOLS
}
RGM_SAMPLES = settings(RGM, "seed", "hierarchy", "learning", "samples")
