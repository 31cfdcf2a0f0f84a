# Experiment potts_ebm (seed 003): Potts energy-based models of 4-level MNIST.
# Per (model, seed): train (PCD) -> analyse (AIS NLL, PLL, samples, mixing) -> evaluate
# (reference classifier). Training and analysis never wait for the classifier.


include: "potts_ebm_functions.smk"


register_experiment(
    "potts_ebm",
    runs=lambda: potts_files("metrics.json"),
    required_columns=["model", "seed", "test_nll_nats", "independent_nll_nats", "fid", "recognisable_fraction"],
    figures=lambda: [R(f"figures/potts_ebm/{name}.png") for name in ("samples", "training", "nll")],
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
        run_id=one_of(POTTS_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    params:
        config=lambda wildcards: POTTS_RUNS[wildcards.run_id],
    script:
        "../../scripts/potts_ebm_train.py"


rule potts_ebm_analyse:
    input:
        mnist=MNIST4,
        model=f"{POTTS_RUN}/model.pt",
    output:
        analysis=f"{POTTS_RUN}/analysis.json",
        samples=f"{POTTS_RUN}/samples.npz",
    log:
        LOG("potts_ebm_analyse", "{run_id}"),
    benchmark:
        BENCH("potts_ebm_analyse", "{run_id}")
    wildcard_constraints:
        run_id=one_of(POTTS_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    params:
        config=lambda wildcards: settings(
            POTTS["analysis"], *POTTS["analysis"], seed=POTTS_RUNS[wildcards.run_id]["seed"]
        ),
    script:
        "../../scripts/potts_ebm_analyse.py"


rule potts_ebm_evaluate:
    input:
        mnist=MNIST4,
        model=f"{POTTS_RUN}/model.pt",
        analysis=f"{POTTS_RUN}/analysis.json",
        samples=f"{POTTS_RUN}/samples.npz",
        reference_model=REFERENCE_MODEL,
        reference_stats=REFERENCE_STATS,
    output:
        metrics=f"{POTTS_RUN}/metrics.json",
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
        config=lambda wildcards: POTTS_RUNS[wildcards.run_id],
    script:
        "../../scripts/potts_ebm_evaluate.py"


rule potts_ebm_figures:
    input:
        table=R("tables/potts_ebm.csv"),
        samples=lambda wildcards: potts_files("samples.npz", first_seed_only=True),
        epochs=lambda wildcards: potts_files("epochs.npz", first_seed_only=True, trained_only=True),
    output:
        samples=report(
            R("figures/potts_ebm/samples.png"),
            caption="../../report/potts_ebm/samples.rst",
            category="potts_ebm",
        ),
        training=report(
            R("figures/potts_ebm/training.png"),
            caption="../../report/potts_ebm/training.rst",
            category="potts_ebm",
        ),
        nll=report(
            R("figures/potts_ebm/nll.png"),
            caption="../../report/potts_ebm/nll.rst",
            category="potts_ebm",
        ),
    log:
        LOG("potts_ebm_figures"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(models=POTTS["models"]),
    script:
        "../../scripts/potts_ebm_figures.py"
