# Experiment potts_ebm (seed 003): energy-based models of 4-level MNIST sampled by block
# Gibbs. Per (model, seed): train (PCD) -> evaluate (likelihoods, our sampler's samples,
# reference-classifier scores, metrics.json). Per THRML run: the same samples and scores
# from THRML.


include: "potts_ebm_functions.smk"


register_experiment(
    "potts_ebm",
    runs=potts_metrics,
    required_columns=["model", "seed", "test_nll_nats", "independent_nll_nats", "fid", "recognisable_fraction"],
    figures=lambda: [R(f"figures/potts_ebm/{name}.png") for name in POTTS_FIGURES],
)


rule potts_ebm:
    input:
        lambda wildcards: experiment_targets("potts_ebm"),


rule potts_ebm_train:
    input:
        MNIST4,
    output:
        model=f"{POTTS_RUN}/model.pt",
        epochs=f"{POTTS_RUN}/epochs.npz",
    log:
        LOG("potts_ebm_train", "{run_id}"),
    benchmark:
        BENCH("potts_ebm_train", "{run_id}")
    wildcard_constraints:
        run_id=one_of(POTTS_TRAINED),
    conda:
        "../../envs/torch.yaml"
    # PCD runs on the CPU (numba checkerboard sweeps, sparse RBM statistics): no GPU to ask for
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=potts_train_settings,
    script:
        "../../scripts/potts_ebm_train.py"


rule potts_ebm_evaluate:
    input:
        mnist=MNIST4,
        model=potts_model_input,
        reference_model=REFERENCE_MODEL,
        reference_stats=REFERENCE_STATS,
    output:
        metrics=f"{POTTS_RUN}/metrics.json",
        samples=f"{POTTS_RUN}/samples.npz",
    log:
        LOG("potts_ebm_evaluate", "{run_id}"),
    benchmark:
        BENCH("potts_ebm_evaluate", "{run_id}")
    wildcard_constraints:
        run_id=one_of(POTTS_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    params:
        config=potts_evaluate_settings,
    script:
        "../../scripts/potts_ebm_evaluate.py"


rule potts_ebm_thrml:
    input:
        mnist=MNIST4,
        model=lambda wildcards: potts_model_input(wildcards)[0],
        reference_model=REFERENCE_MODEL,
        reference_stats=REFERENCE_STATS,
    output:
        metrics=f"{POTTS_RUN}/thrml/metrics.json",
        samples=f"{POTTS_RUN}/thrml/samples.npz",
    log:
        LOG("potts_ebm_thrml", "{run_id}"),
    benchmark:
        BENCH("potts_ebm_thrml", "{run_id}")
    wildcard_constraints:
        run_id=one_of(POTTS_THRML),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=potts_thrml_handoff,
    script:
        "../../scripts/potts_ebm_thrml.py"


rule potts_ebm_figures:
    input:
        table=R("tables/potts_ebm.csv"),
        samples=lambda wildcards: potts_first_seed("samples.npz", POTTS_RUNS),
        thrml=lambda wildcards: potts_first_seed("samples.npz", POTTS_THRML, "thrml/"),
        epochs=lambda wildcards: potts_first_seed("epochs.npz", POTTS_PCD_TRAINED),
    output:
        samples=report(
            R("figures/potts_ebm/samples.png"),
            caption="../../report/potts_ebm/samples.rst",
            category="potts_ebm",
            subcategory="figures",
            labels={"figure": "samples", "experiment": "potts_ebm", "model": "Potts and RBM EBMs"},
        ),
        digits=report(
            R("figures/potts_ebm/digits.png"),
            caption="../../report/potts_ebm/digits.rst",
            category="potts_ebm",
            subcategory="figures",
            labels={"figure": "digits", "experiment": "potts_ebm", "model": "Potts and RBM EBMs"},
        ),
        training=report(
            R("figures/potts_ebm/training.png"),
            caption="../../report/potts_ebm/training.rst",
            category="potts_ebm",
            subcategory="figures",
            labels={"figure": "training", "experiment": "potts_ebm", "model": "Potts and RBM EBMs"},
        ),
        nll=report(
            R("figures/potts_ebm/nll.png"),
            caption="../../report/potts_ebm/nll.rst",
            category="potts_ebm",
            subcategory="figures",
            labels={"figure": "test NLL", "experiment": "potts_ebm", "model": "Potts and RBM EBMs"},
        ),
    log:
        LOG("potts_ebm_figures"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(
            models=[m for m in POTTS["models"]],
            thrml_models=[POTTS_THRML[k]["model"] for k in POTTS_THRML if POTTS_THRML[k]["seed"] == POTTS["seeds"][0]],
            trained_models=[spec["model"] for spec in POTTS_PCD_TRAINED.values() if spec["seed"] == POTTS["seeds"][0]],
        ),
    script:
        "../../scripts/potts_ebm_figures.py"
