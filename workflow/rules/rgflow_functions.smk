# Definitions of the rgflow stage (kept apart from its rules: snakemake --lint wants no defs
# beside rules). Self-contained: everything rgflow.smk uses is defined here.

RGFLOW = config["rgflow"]
RGFLOW_FIGURES = ["samples", "temperature", "receptive_fields", "mixing", "bpd"]
RGFLOW_RUN = R("runs/rgflow/{run_id}")
CELEBA32 = R("data/celeba/celeba32.npz")
RGFLOW_DATASETS = list(RGFLOW["datasets"]) + (["celeba"] if RGFLOW["celeba"]["dir"] else [])
# run_id -> the evaluation hand-off; training takes the same minus `eval`.
RGFLOW_RUNS = (
    {
        run_id(dataset=dataset, prior=prior): settings(
            RGFLOW, "label", "model", "train", "eval", dataset=dataset, prior=prior
        )
        for dataset in RGFLOW_DATASETS
        for prior in RGFLOW["priors"]
    }
    if enabled("rgflow")
    else {}
)


def rgflow_train_settings(wildcards):
    return {key: value for key, value in RGFLOW_RUNS[wildcards.run_id].items() if key != "eval"}


def rgflow_data(wildcards):
    dataset = RGFLOW_RUNS[wildcards.run_id]["dataset"]
    return CELEBA32 if dataset == "celeba" else MSDS(dataset)


def rgflow_files(name):
    return [f"{RGFLOW_RUN}/{name}".format(run_id=key) for key in RGFLOW_RUNS]
