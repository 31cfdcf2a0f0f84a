# Experiment potts_ebm (seed 003): Potts energy-based models of 4-level MNIST.
# Per (model, seed): train (PCD) -> analyse (AIS NLL, PLL, samples, mixing) -> evaluate
# (reference classifier). Training and analysis never wait for the classifier.

include: "potts_ebm_functions.smk"

POTTS_RUN = R("runs/potts_ebm/model-{model}_seed-{seed}")
POTTS_WILDCARDS = {"model": "independent|potts|potts_cond|potts_rbm", "seed": "[0-9]+"}


register_experiment(
    "potts_ebm",
    runs=potts_runs,
    required_columns=["model", "seed", "test_nll_nats", "independent_nll_nats", "fid", "recognisable_fraction"],
    figures=lambda: [R("figures/potts_ebm/samples.png"), R("figures/potts_ebm/training.png"),
                     R("figures/potts_ebm/nll.png")],
)


rule potts_ebm_train:
    input:
        MNIST4,
    output:
        model=f"{POTTS_RUN}/model.pt",
        epochs=f"{POTTS_RUN}/epochs.npz",
    wildcard_constraints:
        **POTTS_WILDCARDS,
    params:
        section=potts_train_settings,
        device=config["device"],
        checkpoint=lambda w: f"{POTTS_RUN}/checkpoint.pt".format(model=w.model, seed=w.seed),
    log:
        LOG("potts_ebm_train", "model-{model}_seed-{seed}"),
    benchmark:
        BENCH("potts_ebm_train", "model-{model}_seed-{seed}")
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/potts_ebm_train.py"


rule potts_ebm_analyse:
    input:
        mnist=MNIST4,
        model=f"{POTTS_RUN}/model.pt",
    output:
        analysis=f"{POTTS_RUN}/analysis.json",
        samples=f"{POTTS_RUN}/samples.npz",
    wildcard_constraints:
        **POTTS_WILDCARDS,
    params:
        analysis=as_json(config["potts_ebm"]["analysis"]),
    log:
        LOG("potts_ebm_analyse", "model-{model}_seed-{seed}"),
    benchmark:
        BENCH("potts_ebm_analyse", "model-{model}_seed-{seed}")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/potts_ebm_analyse.py"


rule potts_ebm_evaluate:
    input:
        model=f"{POTTS_RUN}/model.pt",
        analysis=f"{POTTS_RUN}/analysis.json",
        samples=f"{POTTS_RUN}/samples.npz",
        reference_model=REFERENCE_MODEL,
        reference_stats=REFERENCE_STATS,
    output:
        metrics=f"{POTTS_RUN}/metrics.json",
    wildcard_constraints:
        **POTTS_WILDCARDS,
    params:
        section=as_json({k: v for k, v in config["potts_ebm"].items() if k in ("limit_train", "pcd", "rbm")}),
        device=config["device"],
    log:
        LOG("potts_ebm_evaluate", "model-{model}_seed-{seed}"),
    benchmark:
        BENCH("potts_ebm_evaluate", "model-{model}_seed-{seed}")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/potts_ebm_evaluate.py"


rule potts_ebm_figure:
    input:
        table=R("tables/potts_ebm.csv"),
        samples=lambda w: potts_samples_files(),
        epochs=lambda w: potts_epoch_files(),
    output:
        samples=report(R("figures/potts_ebm/samples.png"), caption="../../report/potts_ebm/samples.rst",
                       category="potts_ebm"),
        training=report(R("figures/potts_ebm/training.png"), caption="../../report/potts_ebm/training.rst",
                        category="potts_ebm"),
        nll=report(R("figures/potts_ebm/nll.png"), caption="../../report/potts_ebm/nll.rst", category="potts_ebm"),
    params:
        models=lambda w: [m for m in potts_section()["models"]],
        trained=lambda w: [m for m in potts_section()["models"] if m != "independent"],
    log:
        LOG("potts_ebm_figure"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/potts_ebm_figure.py"


rule potts_ebm:
    input:
        lambda wildcards: experiment_targets("potts_ebm"),
