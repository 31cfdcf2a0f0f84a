# Definitions of the generative stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything generative.smk uses is defined here.

GEN = config["generative"]
GEN_RUN = R("runs/generative/{run_id}")
GEN_FIGURES = ["quality_cost", "samples"]
# the config block that trains each model: MADE and VAE, each with and without labels
GEN_TRAINING = {"made": "made", "made_cond": "made", "vae": "vae", "vae_cond": "vae"}
# the contract's columns of tables/generative.csv (../shared/CONTRACT.md)
GEN_COLUMNS = [
    "model",
    "family",
    "sampler",
    "seed",
    "nll_nats",
    "nll_kind",
    "fid",
    "recognisable_fraction",
    "recognisable_fraction_vs_ceiling",
    "conditional_recognition",
    "min_class_share",
    "cpu_seconds_per_1000_samples",
    "train_cpu_seconds",
    "energy_joules_per_sample",
    "energy_method",
]


def generative_runs():
    """run_id -> the run's training hand-off: model, seed, data limits and its model's
    training block (a probe: the first seed, see probe_subset)."""
    if not enabled("generative"):
        return {}
    runs = {}
    for model in GEN["models"]:
        for seed in probe_subset(GEN["seeds"]):
            runs[run_id(model=model, seed=seed)] = settings(
                GEN, "train_limit", "test_limit", model=model, seed=int(seed), training=GEN[GEN_TRAINING[model]]
            )
    return runs


GEN_RUNS = generative_runs()


def generative_probe(rule_name, family, run):
    """A job's probe block ({} unless probing); it stands for its model's seeds."""
    represents = len(GEN["seeds"]) // len(probe_subset(GEN["seeds"]))
    return probe_handoff(rule_name, family, BENCH(rule_name, run), represents)


def generative_train_settings(wildcards):
    return GEN_RUNS[wildcards.run_id] | generative_probe("generative_train", "train", wildcards.run_id)


def generative_evaluate_settings(wildcards):
    """The evaluate job's hand-off: the run and the evaluation block (with the probe block,
    which cuts the evaluation's loops)."""
    evaluation = settings(GEN["evaluation"], *GEN["evaluation"])
    evaluation = evaluation | generative_probe("generative_evaluate", "evaluate", wildcards.run_id)
    return canonical({"run": GEN_RUNS[wildcards.run_id], "evaluation": evaluation})


def generative_metrics():
    return [f"{GEN_RUN}/metrics.json".format(run_id=key) for key in GEN_RUNS]


def generative_ebm_table():
    """The EBMs' table the comparison joins (none when potts_ebm is off)."""
    return [R("tables/potts_ebm.csv")] if enabled("potts_ebm") else []


def generative_first_seed_samples():
    first = GEN["seeds"][0]
    return [f"{GEN_RUN}/samples.npz".format(run_id=key) for key, spec in GEN_RUNS.items() if spec["seed"] == first]
