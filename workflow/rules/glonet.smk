# Experiment glonet (seed 002): GloNet vs MLP vs ResMLP across depth. One training job per
# (grid, model, depth, seed); figures read the table and the runs' arrays.npz.


include: "glonet_functions.smk"


register_experiment(
    "glonet",
    runs=lambda: glonet_files("metrics.json"),
    required_columns=["model", "depth", "features", "epochs", "seed", "test_accuracy", "train_seconds", "diverged"],
    figures=lambda: [R(f"figures/glonet/{name}.png") for name in GLONET_FIGURES] if GLONET_RUNS else [],
)


rule glonet:
    input:
        lambda wildcards: experiment_targets("glonet"),


rule glonet_train:
    input:
        MNIST28,
    output:
        metrics=f"{GLONET_RUN}/metrics.json",
        arrays=f"{GLONET_RUN}/arrays.npz",
    log:
        LOG("glonet_train", "{run_id}"),
    benchmark:
        BENCH("glonet_train", "{run_id}")
    wildcard_constraints:
        run_id=one_of(GLONET_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    params:
        config=lambda wildcards: GLONET_RUNS[wildcards.run_id],
    script:
        "../../scripts/glonet_train.py"


rule glonet_figures:
    input:
        table=R("tables/glonet.csv"),
        arrays=lambda wildcards: glonet_files("arrays.npz"),
    output:
        accuracy_vs_depth=report(
            R("figures/glonet/accuracy_vs_depth.png"),
            caption="../../report/glonet/accuracy_vs_depth.rst",
            category="glonet",
        ),
        learning_curves=report(
            R("figures/glonet/learning_curves.png"),
            caption="../../report/glonet/learning_curves.rst",
            category="glonet",
        ),
        layer_usage=report(
            R("figures/glonet/layer_usage.png"),
            caption="../../report/glonet/layer_usage.rst",
            category="glonet",
        ),
        early_exit=report(
            R("figures/glonet/early_exit.png"),
            caption="../../report/glonet/early_exit.rst",
            category="glonet",
        ),
    log:
        LOG("glonet_figures"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(),
    script:
        "../../scripts/glonet_figures.py"
