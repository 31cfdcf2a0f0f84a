# Definitions of the potts_ebm stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything potts_ebm.smk uses is defined here.

POTTS = config["potts_ebm"]
POTTS_RUN = R("runs/potts_ebm/{run_id}")
# the config block that trains each model (the independent model is fitted by counting)
POTTS_TRAINING = {"potts": "pcd", "potts_cond": "pcd", "rbm": "rbm", "rbm_cond": "rbm"}
POTTS_FIGURES = ["samples", "digits", "training", "nll"]


def potts_seeds(model):
    """The seeds a model runs with: the independent model is deterministic, its first seed only."""
    return POTTS["seeds"][:1] if model == "independent" else POTTS["seeds"]


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


POTTS_RUNS = potts_runs()
POTTS_TRAINED = {key: spec for key, spec in POTTS_RUNS.items() if spec["model"] != "independent"}
# runs that THRML samples too: the configured models and seeds
POTTS_THRML = {
    key: spec
    for key, spec in POTTS_TRAINED.items()
    if spec["model"] in POTTS["thrml"]["models"] and spec["seed"] in POTTS["thrml"]["seeds"]
}


def potts_represents(run, thrml=False):
    """How many jobs of the real run a job of ``run`` stands for: its model's seeds (THRML's:
    those it samples) over the ones the probe runs; 1 outside a probe."""
    model = POTTS_RUNS[run]["model"]
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
    analysis = potts_analysis(run["seed"]) | potts_probe("potts_ebm_evaluate", "evaluate", wildcards.run_id)
    return canonical({"run": run, "analysis": analysis})


def potts_thrml_handoff(wildcards):
    thrml = potts_thrml_settings() | potts_probe("potts_ebm_thrml", "cpu", wildcards.run_id, thrml=True)
    return canonical({"run": POTTS_THRML[wildcards.run_id], "thrml": thrml})


def potts_analysis(seed):
    return settings(POTTS["analysis"], *POTTS["analysis"], seed=int(seed))


def potts_thrml_settings():
    """What a THRML job reads: its chain count and the sampling protocol it shares with the
    evaluate jobs. The THRML models and seeds choose which jobs exist (POTTS_THRML), so
    they are no job's setting: editing them reruns no existing job."""
    return settings(
        POTTS["thrml"],
        "samples",
        **{
            k: POTTS["analysis"][k]
            for k in (
                "conditional_start",
                "sample_sweeps",
                "lattice_sample_sweeps",
                "checkpoints",
                "ceiling_images",
                "memorisation_images",
            )
        },
    )


def potts_model_input(wildcards):
    """The trained model of a run (nothing for the independent model)."""
    return [f"{POTTS_RUN}/model.pt".format(run_id=wildcards.run_id)] if wildcards.run_id in POTTS_TRAINED else []


def potts_metrics():
    return [f"{POTTS_RUN}/metrics.json".format(run_id=key) for key in POTTS_RUNS] + [
        f"{POTTS_RUN}/thrml/metrics.json".format(run_id=key) for key in POTTS_THRML
    ]


def potts_first_seed(name, runs, subdir=""):
    """A file of each model's first-seed run among ``runs``."""
    first = POTTS["seeds"][0]
    return [f"{POTTS_RUN}/{subdir}{name}".format(run_id=key) for key, spec in runs.items() if spec["seed"] == first]
