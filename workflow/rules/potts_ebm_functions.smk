# Definitions of the potts_ebm stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything potts_ebm.smk uses is defined here.

POTTS = config["potts_ebm"]
POTTS_RUN = R("runs/potts_ebm/{run_id}")
# the config block that trains each model (the independent model is fitted by counting)
POTTS_TRAINING = {
    "potts": "pcd",
    "potts_cond": "pcd",
    "rbm": "rbm",
    "rbm_cond": "rbm",
    "dbn": "dbn",
    "dbn_cond": "dbn",
    "dtm": "dtm",
    "dtm_cond": "dtm",
}
# a model sampled from another's trained file: the label-conditional DBN with its labels free
POTTS_TRAINED_AS = {"dbn": "dbn_cond"}
POTTS_FIGURES = ["samples", "digits", "training", "nll"]


def potts_seeds(model):
    """The seeds a model runs with: its own list in ``model_seeds`` (more seeds where a
    verdict sits near its threshold), else ``seeds``; the independent model is
    deterministic, its first seed only."""
    if model == "independent":
        return POTTS["seeds"][:1]
    return POTTS["model_seeds"].get(model, POTTS["seeds"])


def potts_runs():
    """run_id -> the run's training hand-off: model, seed, data limits and the training
    block it uses (a probe: the first seed, see probe_subset). Analysis and THRML settings
    go to their own rules, so editing them never retrains."""
    if not enabled("potts_ebm"):
        return {}
    runs = {}
    for model in POTTS["models"]:
        for seed in probe_subset(potts_seeds(model)):
            block = POTTS[POTTS_TRAINING[model]] if model in POTTS_TRAINING else {}
            runs[run_id(model=model, seed=seed)] = settings(
                POTTS, "train_limit", "test_limit", "smoothing", model=model, seed=int(seed), training=block
            )
    return runs


def potts_trained_id(key):
    """The run whose train job made the model a run samples (None: the independent model)."""
    spec = POTTS_RUNS[key]
    if spec["model"] == "independent":
        return None
    return run_id(model=POTTS_TRAINED_AS.get(spec["model"], spec["model"]), seed=spec["seed"])


POTTS_RUNS = potts_runs()
# trained run_id -> its training hand-off (a model sampled from another's file adds that one)
POTTS_TRAINED = {
    potts_trained_id(key): spec | {"model": POTTS_TRAINED_AS.get(spec["model"], spec["model"])}
    for key, spec in POTTS_RUNS.items()
    if spec["model"] != "independent"
}
# runs that THRML samples too: the configured models and seeds
POTTS_THRML = {
    key: spec
    for key, spec in POTTS_RUNS.items()
    if spec["model"] in POTTS["thrml"]["models"] and spec["seed"] in POTTS["thrml"]["seeds"]
}


def potts_represents(run, thrml=False):
    """How many jobs of the real run a job of ``run`` stands for: its model's seeds (THRML's:
    those it samples) over the ones the probe runs; 1 outside a probe."""
    model = (POTTS_RUNS.get(run) or POTTS_TRAINED[run])["model"]
    seeds = potts_seeds(model)
    if thrml:
        seeds = [seed for seed in seeds if seed in POTTS["thrml"]["seeds"]]
    return len(seeds) // len(probe_subset(seeds))


def potts_probe(rule_name, family, run, thrml=False):
    """A job's probe block ({} unless probing); a THRML job's benchmark is its rule's."""
    return probe_handoff(rule_name, family, BENCH(rule_name, run), potts_represents(run, thrml))


def potts_train_settings(wildcards):
    return POTTS_TRAINED[wildcards.run_id] | potts_probe("potts_ebm_train", "cpu", wildcards.run_id)


def potts_evaluate_settings(wildcards):
    """The evaluate job's hand-off: the run and the analysis (with the probe block, since the
    job's script hands the two on apart and the probe cuts the analysis)."""
    run = POTTS_RUNS[wildcards.run_id]
    analysis = potts_analysis(run) | potts_probe("potts_ebm_evaluate", "evaluate", wildcards.run_id)
    return canonical({"run": run, "analysis": analysis})


def potts_thrml_handoff(wildcards):
    run = POTTS_THRML[wildcards.run_id]
    thrml = potts_thrml_settings(run) | potts_probe("potts_ebm_thrml", "cpu", wildcards.run_id, thrml=True)
    return canonical({"run": POTTS_THRML[wildcards.run_id], "thrml": thrml})


# The rows that are sampled and scored but not annealed (DBN, DTM) read only these analysis
# keys, and the keys of POTTS_SAMPLED_ONLY go to them alone: editing one reruns no other run.
POTTS_SAMPLED_KEYS = {
    "dbn": ("checkpoints", "ceiling_images", "memorisation_images", "dbn_sample_sweeps", "long_sweeps_factor"),
    "dtm": ("ceiling_images", "memorisation_images", "long_sweeps_factor"),
}
POTTS_SAMPLED_ONLY = ("dbn_sample_sweeps", "long_sweeps_factor")


def potts_sampled_keys(run):
    """The analysis keys a sampled-only row reads (None: an annealed row, which reads the rest)."""
    return POTTS_SAMPLED_KEYS.get(POTTS_TRAINING.get(run["model"]))


def potts_analysis(run):
    analysis = POTTS["analysis"]
    sampled = potts_sampled_keys(run)
    if sampled:
        keys = ["samples", *sampled]
    else:
        keys = [k for k in analysis if k not in POTTS_SAMPLED_ONLY]
    return settings(analysis, *keys, seed=int(run["seed"]))


def potts_thrml_settings(run):
    """What a THRML job reads: its chain count and the sampling protocol it shares with the
    evaluate jobs. The THRML models and seeds choose which jobs exist (POTTS_THRML), so
    they are no job's setting: editing them reruns no existing job."""
    sampled = potts_sampled_keys(run)
    if sampled:
        shared, extra = sampled, {"seed": int(run["seed"])}
    else:
        shared = (
            "conditional_start",
            "sample_sweeps",
            "lattice_sample_sweeps",
            "checkpoints",
            "ceiling_images",
            "memorisation_images",
        )
        extra = {}
    return settings(POTTS["thrml"], "samples", **{k: POTTS["analysis"][k] for k in shared}, **extra)


def potts_model_input(wildcards):
    """The trained model a run samples (nothing for the independent model)."""
    trained = potts_trained_id(wildcards.run_id)
    return [] if trained is None else [f"{POTTS_RUN}/model.pt".format(run_id=trained)]


def potts_metrics():
    return [f"{POTTS_RUN}/metrics.json".format(run_id=key) for key in POTTS_RUNS] + [
        f"{POTTS_RUN}/thrml/metrics.json".format(run_id=key) for key in POTTS_THRML
    ]


def potts_first_seed(name, runs, subdir=""):
    """A file of each model's first-seed run among ``runs``."""
    first = POTTS["seeds"][0]
    return [f"{POTTS_RUN}/{subdir}{name}".format(run_id=key) for key, spec in runs.items() if spec["seed"] == first]


# trained runs whose per-update gaps the training figure draws (the DBN and the DTM keep
# per-epoch gaps per layer or step)
POTTS_PCD_TRAINED = {
    key: spec for key, spec in POTTS_TRAINED.items() if POTTS_TRAINING[spec["model"]] in ("pcd", "rbm")
}
