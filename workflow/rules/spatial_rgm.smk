# Experiment spatial_rgm (seed 001): the Spatial RGM, a Gumbel-softmax hierarchy (7x7 local
# codes z1, digit concept z2), trained by published recipes (grids), and the seed's
# experiments, each a number. Rule 1 trains (needs only MNIST); rule 2 runs the
# experiments with the reference classifier; the one-run figures are drawn from rule 2's
# saved arrays, the seeds figure from every run's metrics.json.


include: "spatial_rgm_functions.smk"


register_experiment(
    "spatial_rgm",
    runs=lambda: spatial_files("metrics.json"),
    required_columns=[
        "epochs",
        "seed",
        "test_accuracy",
        "recon_mse",
        "locality",
        "conditional_recognition",
        "diversity_ratio",
        "global_switch_share",
        "val_accuracy",
        "seconds_per_epoch",
    ],
    figures=lambda: [R(f"figures/spatial_rgm/{name}.png") for name in SPATIAL_FIGURES],
)


rule spatial_rgm:
    input:
        lambda wildcards: experiment_targets("spatial_rgm"),


rule spatial_rgm_train:
    input:
        mnist=MNIST28,
    output:
        model=f"{SPATIAL_RUN}/model.pt",
        train=f"{SPATIAL_RUN}/train.json",
    log:
        LOG("spatial_rgm_train", "{run_id}"),
    benchmark:
        BENCH("spatial_rgm_train", "{run_id}")
    wildcard_constraints:
        run_id=one_of(SPATIAL_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    params:
        config=spatial_train_settings,
    script:
        "../../scripts/spatial_rgm_train.py"


rule spatial_rgm_evaluate:
    input:
        model=rules.spatial_rgm_train.output.model,
        train=rules.spatial_rgm_train.output.train,
        mnist=MNIST28,
        reference=REFERENCE_MODEL,
    output:
        metrics=f"{SPATIAL_RUN}/metrics.json",
        arrays=f"{SPATIAL_RUN}/arrays.npz",
    log:
        LOG("spatial_rgm_evaluate", "{run_id}"),
    benchmark:
        BENCH("spatial_rgm_evaluate", "{run_id}")
    wildcard_constraints:
        run_id=one_of(SPATIAL_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    params:
        config=spatial_evaluate_settings,
    script:
        "../../scripts/spatial_rgm_evaluate.py"


rule spatial_rgm_figure_abstraction:
    input:
        arrays=lambda wildcards: spatial_figure_arrays(),
    output:
        report(
            R("figures/spatial_rgm/abstraction.png"),
            caption="../../report/spatial_rgm/abstraction.rst",
            category="spatial_rgm",
            subcategory="figures",
            labels={"figure": "abstraction", "experiment": "spatial_rgm", "model": "Spatial RGM"},
        ),
    log:
        LOG("spatial_rgm_figure", "abstraction"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="abstraction"),
    script:
        "../../scripts/spatial_rgm_figure.py"


rule spatial_rgm_figure_seeds:
    input:
        metrics=lambda wildcards: spatial_files("metrics.json"),
        claims=SPATIAL_CLAIMS,
    output:
        report(
            R("figures/spatial_rgm/seeds.png"),
            caption="../../report/spatial_rgm/seeds.rst",
            category="spatial_rgm",
            subcategory="figures",
            labels={"figure": "seeds", "experiment": "spatial_rgm", "model": "Spatial RGM"},
        ),
    log:
        LOG("spatial_rgm_figure", "seeds"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="seeds"),
    script:
        "../../scripts/spatial_rgm_figure.py"


rule spatial_rgm_figure_conditional_samples:
    input:
        arrays=lambda wildcards: spatial_figure_arrays(),
    output:
        report(
            R("figures/spatial_rgm/conditional_samples.png"),
            caption="../../report/spatial_rgm/conditional_samples.rst",
            category="spatial_rgm",
            subcategory="figures",
            labels={"figure": "conditional samples", "experiment": "spatial_rgm", "model": "Spatial RGM"},
        ),
    log:
        LOG("spatial_rgm_figure", "conditional_samples"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="conditional_samples"),
    script:
        "../../scripts/spatial_rgm_figure.py"


rule spatial_rgm_figure_locality:
    input:
        arrays=lambda wildcards: spatial_figure_arrays(),
    output:
        report(
            R("figures/spatial_rgm/locality.png"),
            caption="../../report/spatial_rgm/locality.rst",
            category="spatial_rgm",
            subcategory="figures",
            labels={"figure": "locality", "experiment": "spatial_rgm", "model": "Spatial RGM"},
        ),
    log:
        LOG("spatial_rgm_figure", "locality"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="locality"),
    script:
        "../../scripts/spatial_rgm_figure.py"
