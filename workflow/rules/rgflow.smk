# Experiment rgflow: RG-Flow (MERA-structured Real NVP) on MSDS1 / MSDS2 and, when the
# user supplies rgflow.celeba.dir, CelebA 32x32. One training job per (dataset, prior),
# then an evaluation job writing metrics.json and the arrays every figure is drawn from.


include: "rgflow_functions.smk"


register_experiment(
    "rgflow",
    runs=lambda: rgflow_files("metrics.json"),
    required_columns=["dataset", "prior", "params", "epochs", "test_bpd"],
    figures=lambda: [R(f"figures/rgflow/{name}.png") for name in RGFLOW_FIGURES],
)


rule rgflow:
    input:
        lambda wildcards: experiment_targets("rgflow"),


rule rgflow_celeba:
    output:
        CELEBA32,
    log:
        LOG("rgflow_celeba"),
    benchmark:
        BENCH("rgflow_celeba")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **family_resources("data"),
    params:
        config=settings(RGFLOW["celeba"], "dir", "train_limit"),
    script:
        "../../scripts/rgflow_celeba.py"


rule rgflow_train:
    input:
        data=rgflow_data,
    output:
        model=f"{RGFLOW_RUN}/model.pt",
    log:
        LOG("rgflow_train", "{run_id}"),
    benchmark:
        BENCH("rgflow_train", "{run_id}")
    wildcard_constraints:
        run_id=one_of(RGFLOW_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    params:
        config=rgflow_train_settings,
    script:
        "../../scripts/rgflow_train.py"


rule rgflow_evaluate:
    input:
        model=rules.rgflow_train.output.model,
        data=rgflow_data,
    output:
        metrics=f"{RGFLOW_RUN}/metrics.json",
        arrays=f"{RGFLOW_RUN}/arrays.npz",
    log:
        LOG("rgflow_evaluate", "{run_id}"),
    benchmark:
        BENCH("rgflow_evaluate", "{run_id}")
    wildcard_constraints:
        run_id=one_of(RGFLOW_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    params:
        config=rgflow_evaluate_settings,
    script:
        "../../scripts/rgflow_evaluate.py"


rule rgflow_figures:
    input:
        table=R("tables/rgflow.csv"),
        arrays=lambda wildcards: rgflow_files("arrays.npz"),
    output:
        samples=report(
            R("figures/rgflow/samples.png"),
            caption="../../report/rgflow/samples.rst",
            category="rgflow",
            subcategory="figures",
            labels={"figure": "samples", "experiment": "rgflow", "model": "RG-Flow"},
        ),
        temperature=report(
            R("figures/rgflow/temperature.png"),
            caption="../../report/rgflow/temperature.rst",
            category="rgflow",
            subcategory="figures",
            labels={"figure": "temperature", "experiment": "rgflow", "model": "RG-Flow"},
        ),
        receptive_fields=report(
            R("figures/rgflow/receptive_fields.png"),
            caption="../../report/rgflow/receptive_fields.rst",
            category="rgflow",
            subcategory="figures",
            labels={"figure": "receptive fields", "experiment": "rgflow", "model": "RG-Flow"},
        ),
        mixing=report(
            R("figures/rgflow/mixing.png"),
            caption="../../report/rgflow/mixing.rst",
            category="rgflow",
            subcategory="figures",
            labels={"figure": "mixing", "experiment": "rgflow", "model": "RG-Flow"},
        ),
        bpd=report(
            R("figures/rgflow/bpd.png"),
            caption="../../report/rgflow/bpd.rst",
            category="rgflow",
            subcategory="figures",
            labels={"figure": "bits per dim", "experiment": "rgflow", "model": "RG-Flow"},
        ),
    log:
        LOG("rgflow_figures"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(run_ids=list(RGFLOW_RUNS)),
    script:
        "../../scripts/rgflow_figures.py"
