# Experiment glonet (seed 002, the official GloNet notebook): GloNet vs MLP vs ResMLP across
# depth. One training rule per grid; a job trains one (grid, model, seed) across the grid's
# depths (the notebook grid's 72 tiny runs would otherwise pay ~3 CPU-seconds of process
# start-up each). Figures read the table, the runs' arrays.npz and the claims' anchors.


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


for GLONET_GRID in GLONET_GRIDS:

    rule:
        name:
            f"glonet_train_{GLONET_GRID}"
        input:
            MNIST28,
        output:
            metrics=glonet_job_outputs(GLONET_GRID, "metrics.json"),
            arrays=glonet_job_outputs(GLONET_GRID, "arrays.npz"),
        log:
            LOG(f"glonet_train_{GLONET_GRID}", "model-{model}_seed-{seed}"),
        benchmark:
            BENCH(f"glonet_train_{GLONET_GRID}", "model-{model}_seed-{seed}")
        wildcard_constraints:
            model=one_of(GLONET_GRIDS[GLONET_GRID]["models"]),
            seed=one_of(GLONET_GRIDS[GLONET_GRID]["seeds"]),
        conda:
            "../../envs/torch.yaml"
        threads: family_threads("train")
        resources:
            **family_resources("train"),
        params:
            config=lambda wildcards, grid=GLONET_GRID: glonet_job(grid, wildcards.model, int(wildcards.seed)),
        script:
            "../../scripts/glonet_train.py"


rule glonet_figures:
    input:
        table=R("tables/glonet.csv"),
        arrays=lambda wildcards: glonet_files("arrays.npz"),
        claims=GLONET_CLAIMS,
    output:
        accuracy_vs_depth=report(
            R("figures/glonet/accuracy_vs_depth.png"),
            caption="../../report/glonet/accuracy_vs_depth.rst",
            category="glonet",
            subcategory="figures",
            labels={"figure": "accuracy vs depth", "experiment": "glonet", "model": "GloNet, MLP, ResMLP"},
        ),
        learning_curves=report(
            R("figures/glonet/learning_curves.png"),
            caption="../../report/glonet/learning_curves.rst",
            category="glonet",
            subcategory="figures",
            labels={"figure": "learning curves", "experiment": "glonet", "model": "GloNet, MLP, ResMLP"},
        ),
        layer_usage=report(
            R("figures/glonet/layer_usage.png"),
            caption="../../report/glonet/layer_usage.rst",
            category="glonet",
            subcategory="figures",
            labels={"figure": "layer usage", "experiment": "glonet", "model": "GloNet, MLP, ResMLP"},
        ),
        early_exit=report(
            R("figures/glonet/early_exit.png"),
            caption="../../report/glonet/early_exit.rst",
            category="glonet",
            subcategory="figures",
            labels={"figure": "early exit", "experiment": "glonet", "model": "GloNet, MLP, ResMLP"},
        ),
    log:
        LOG("glonet_figures"),
    benchmark:
        BENCH("glonet_figures")
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(),
    script:
        "../../scripts/glonet_figures.py"
