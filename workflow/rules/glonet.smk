# Experiment glonet (issue 4, seed 002): GloNet vs MLP vs ResMLP across depth.
# One training job per (grid, model, depth, seed); figures read the table and arrays.npz.

include: "glonet_functions.smk"

GLONET = config.get("glonet", {})


# Keys that decide a run's numbers; an extra grid (e.g. the official notebook's
# 32-feature setting) may override any of them for its own runs.
GLONET_TRAIN_KEYS = ["features", "epochs", "batch_size", "lr", "optimizer", "momentum", "train_limit", "test_limit"]


GLONET_RUNS = glonet_runs()


GLONET_FIGURES = ["accuracy_vs_depth", "learning_curves", "layer_usage", "early_exit"]

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
        metrics=R("runs/glonet/{run_id}/metrics.json"),
        arrays=R("runs/glonet/{run_id}/arrays.npz"),
    wildcard_constraints:
        run_id="|".join(GLONET_RUNS) or "none",
    params:
        settings=lambda wildcards: as_json(GLONET_RUNS[wildcards.run_id]),
        keep_checkpoint=GLONET.get("keep_checkpoint", False),
        device=config["device"],
    log:
        LOG("glonet_train", "{run_id}"),
    benchmark:
        BENCH("glonet_train", "{run_id}")
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/glonet_train.py"


rule glonet_figures:
    input:
        table=R("tables/glonet.csv"),
        arrays=lambda wildcards: glonet_files("arrays.npz"),
    output:
        accuracy_vs_depth=report(R("figures/glonet/accuracy_vs_depth.png"),
                                 caption="../../report/glonet/accuracy_vs_depth.rst", category="glonet"),
        learning_curves=report(R("figures/glonet/learning_curves.png"),
                               caption="../../report/glonet/learning_curves.rst", category="glonet"),
        layer_usage=report(R("figures/glonet/layer_usage.png"),
                           caption="../../report/glonet/layer_usage.rst", category="glonet"),
        early_exit=report(R("figures/glonet/early_exit.png"),
                          caption="../../report/glonet/early_exit.rst", category="glonet"),
    params:
        run_ids=lambda wildcards: list(GLONET_RUNS),
    log:
        LOG("glonet_figures"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/glonet_figures.py"
