# Definitions of the rgflow stage (kept apart from its rules: snakemake --lint wants no defs
# beside rules). Self-contained: everything rgflow.smk uses is defined here.

RGFLOW = config["rgflow"]
RGFLOW_FIGURES = ["samples", "temperature", "receptive_fields", "mixing", "bpd"]
RGFLOW_RUN = R("runs/rgflow/{run_id}")
CELEBA32 = R("data/celeba/celeba32.npz")
RGFLOW_DATASETS = list(RGFLOW["datasets"]) + (["celeba"] if RGFLOW["celeba"]["dir"] else [])


def rgflow_shapes():
    """The (dataset, prior) runs in groups of equal cost: the MSDS datasets share one size
    and the priors cost the same, CelebA is larger. A probe runs the first of each group
    (probe_subset) and counts the group's runs as its copies."""
    msds = [dataset for dataset in RGFLOW_DATASETS if dataset != "celeba"]
    groups = [[(dataset, prior) for dataset in msds for prior in RGFLOW["priors"]]]
    groups += [[("celeba", prior) for prior in RGFLOW["priors"]]] if "celeba" in RGFLOW_DATASETS else []
    return [group for group in groups if group]


# run_id -> the evaluation hand-off; training takes the same minus `eval`.
RGFLOW_RUNS = (
    {
        run_id(dataset=dataset, prior=prior): settings(
            RGFLOW, "label", "model", "train", "eval", dataset=dataset, prior=prior
        )
        for group in rgflow_shapes()
        for dataset, prior in probe_subset(group)
    }
    if enabled("rgflow")
    else {}
)
# run_id -> how many runs of its group it stands for (more than 1 only in a probe)
RGFLOW_REPRESENTS = {
    run_id(dataset=dataset, prior=prior): len(group) // len(probe_subset(group))
    for group in rgflow_shapes()
    for dataset, prior in probe_subset(group)
}


def rgflow_train_settings(wildcards):
    handoff = {key: value for key, value in RGFLOW_RUNS[wildcards.run_id].items() if key != "eval"}
    return handoff | rgflow_probe("rgflow_train", "train", wildcards.run_id)


def rgflow_evaluate_settings(wildcards):
    return RGFLOW_RUNS[wildcards.run_id] | rgflow_probe("rgflow_evaluate", "evaluate", wildcards.run_id)


def rgflow_probe(rule_name, family, run):
    return probe_handoff(rule_name, family, BENCH(rule_name, run), RGFLOW_REPRESENTS[run])


def rgflow_data(wildcards):
    dataset = RGFLOW_RUNS[wildcards.run_id]["dataset"]
    return CELEBA32 if dataset == "celeba" else MSDS(dataset)


def rgflow_files(name):
    return [f"{RGFLOW_RUN}/{name}".format(run_id=key) for key in RGFLOW_RUNS]
