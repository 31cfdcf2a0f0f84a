# Helper functions of rgflow.smk (kept apart: snakemake --lint wants no defs beside rules).

def rgflow_datasets():
    section = config["rgflow"]
    return list(section["datasets"]) + (["celeba"] if section.get("celeba_dir") else [])


def rgflow_run_ids():
    return [run_id(dataset=d, prior=p) for d in rgflow_datasets() for p in config["rgflow"]["priors"]]


def rgflow_data(wildcards):
    if wildcards.dataset == "celeba":
        return R("data/celeba/celeba32.npz")
    return MSDS(wildcards.dataset)


def rgflow_section(*keys):
    return as_json({key: config["rgflow"][key] for key in keys})


