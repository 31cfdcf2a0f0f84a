# Experiment rgflow: RG-Flow (MERA-structured Real NVP) on MSDS1 / MSDS2 and, when the
# user supplies rgflow.celeba_dir, CelebA 32x32. One training job per (dataset, prior),
# then an evaluation job writing metrics.json and the arrays every figure is drawn from.

include: "rgflow_functions.smk"

RGFLOW_FIGURES = ["samples", "temperature", "receptive_fields", "mixing", "bpd"]


register_experiment(
    "rgflow",
    runs=lambda: [R(f"runs/rgflow/{rid}/metrics.json") for rid in rgflow_run_ids()],
    required_columns=["dataset", "prior", "params", "epochs", "test_bpd"],
    figures=lambda: [R(f"figures/rgflow/{name}.png") for name in RGFLOW_FIGURES],
)


rule rgflow_celeba:
    output:
        R("data/celeba/celeba32.npz"),
    params:
        celeba_dir=config["rgflow"].get("celeba_dir"),
        limit=config["rgflow"].get("celeba_limit"),
    log:
        LOG("rgflow_celeba"),
    benchmark:
        BENCH("rgflow_celeba")
    threads: 1
    resources:
        **family_resources("data"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/rgflow_celeba.py"


rule rgflow_train:
    input:
        data=rgflow_data,
    output:
        model=R("runs/rgflow/dataset-{dataset}_prior-{prior}/model.pt"),
    wildcard_constraints:
        dataset="msds1|msds2|celeba",
        prior="laplace|gaussian",
    params:
        section=rgflow_section("label", "model", "train"),
        # The per-epoch checkpoint is not an output, so a killed job resumes from it.
        checkpoint=R("runs/rgflow/dataset-{dataset}_prior-{prior}/checkpoint.pt"),
        device=config["device"],
    log:
        LOG("rgflow_train", "{dataset}_{prior}"),
    benchmark:
        BENCH("rgflow_train", "{dataset}_{prior}")
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/rgflow_train.py"


rule rgflow_evaluate:
    input:
        model=rules.rgflow_train.output.model,
        data=rgflow_data,
    output:
        metrics=R("runs/rgflow/dataset-{dataset}_prior-{prior}/metrics.json"),
        arrays=R("runs/rgflow/dataset-{dataset}_prior-{prior}/arrays.npz"),
    wildcard_constraints:
        dataset="msds1|msds2|celeba",
        prior="laplace|gaussian",
    params:
        section=rgflow_section("label", "model", "train", "eval"),
        run_id="dataset-{dataset}_prior-{prior}",
        device=config["device"],
    log:
        LOG("rgflow_evaluate", "{dataset}_{prior}"),
    benchmark:
        BENCH("rgflow_evaluate", "{dataset}_{prior}")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/rgflow_evaluate.py"


rule rgflow_figures:
    input:
        table=R("tables/rgflow.csv"),
        arrays=lambda wildcards: [R(f"runs/rgflow/{rid}/arrays.npz") for rid in rgflow_run_ids()],
    output:
        samples=report(R("figures/rgflow/samples.png"), caption="../../report/rgflow/samples.rst", category="rgflow"),
        temperature=report(R("figures/rgflow/temperature.png"), caption="../../report/rgflow/temperature.rst",
                           category="rgflow"),
        receptive_fields=report(R("figures/rgflow/receptive_fields.png"),
                                caption="../../report/rgflow/receptive_fields.rst", category="rgflow"),
        mixing=report(R("figures/rgflow/mixing.png"), caption="../../report/rgflow/mixing.rst", category="rgflow"),
        bpd=report(R("figures/rgflow/bpd.png"), caption="../../report/rgflow/bpd.rst", category="rgflow"),
    params:
        run_ids=lambda wildcards: rgflow_run_ids(),
    log:
        LOG("rgflow_figures"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/rgflow_figures.py"


rule rgflow:
    input:
        lambda wildcards: experiment_targets("rgflow"),
