# Experiment rgm: the discrete Renormalising Generative Model (Friston et al. 2024) on
# 32x32 MNIST, as the SPM demo DEM_MNIST_RGM.m runs it. The fitted models of rgm.fits (SVD
# quantiser, fast structure learning on the exemplars, active learning over the stream; our
# recipe and the demo's), one evaluation job per protocol, an ablation (one job per variant, scored on validation
# images, then a table), figures from arrays. numpy code: family `cpu`, never a GPU
# allocation.


include: "rgm_functions.smk"


register_experiment(
    "rgm",
    runs=lambda: [f"{RGM_RUN}/metrics.json".format(protocol=protocol) for protocol in RGM_PROTOCOLS],
    required_columns=[
        "protocol",
        "n_train",
        "test_accuracy",
        "test_accuracy_se",
        "confident_half_accuracy",
        "structure_seconds",
        "learn_seconds",
    ],
    figures=lambda: [R(f"figures/rgm/{name}.png") for name in RGM_FIGURES],
    extra_targets=lambda: [R("tables/rgm_ablation.csv")],
)


rule rgm:
    input:
        lambda wildcards: experiment_targets("rgm"),


rule rgm_train:
    input:
        mnist32=MNIST32_RGM,
    output:
        model=f"{RGM_MODEL_DIR}/model.npz",
        stream=f"{RGM_MODEL_DIR}/stream.npz",
        fit=f"{RGM_MODEL_DIR}/fit.json",
    log:
        LOG("rgm_train", "{fit}"),
    benchmark:
        BENCH("rgm_train", "{fit}")
    wildcard_constraints:
        fit=one_of(RGM_FITS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=rgm_fit_settings,
    script:
        "../../scripts/rgm_train.py"


rule rgm_evaluate:
    input:
        mnist32=MNIST32_RGM,
        model=lambda wildcards: rgm_model_file(RGM_PROTOCOLS[wildcards.protocol], "model.npz"),
        fit=lambda wildcards: rgm_model_file(RGM_PROTOCOLS[wildcards.protocol], "fit.json"),
        stream=lambda wildcards: rgm_model_file(RGM_PROTOCOLS[wildcards.protocol], "stream.npz"),
    output:
        metrics=f"{RGM_RUN}/metrics.json",
        scores=f"{RGM_RUN}/scores.npz",
    log:
        LOG("rgm_evaluate", "{protocol}"),
    benchmark:
        BENCH("rgm_evaluate", "{protocol}")
    wildcard_constraints:
        protocol=one_of(RGM_PROTOCOLS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=rgm_evaluation_settings,
    script:
        "../../scripts/rgm_evaluate.py"


# The ablation: the default settings with one ingredient switched off per variant, scored
# on the validation images (never a test set); the defaults are chosen from its table.
rule rgm_ablation:
    input:
        mnist28=MNIST28,
        mnist32=MNIST32_RGM,
    output:
        metrics=f"{RGM_ABLATION_RUN}/metrics.json",
    log:
        LOG("rgm_ablation", "{variant}"),
    benchmark:
        BENCH("rgm_ablation", "{variant}")
    wildcard_constraints:
        variant=one_of(RGM_ABLATION),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=rgm_ablation_settings,
    script:
        "../../scripts/rgm_ablation.py"


rule rgm_ablation_table:
    input:
        [f"{RGM_ABLATION_RUN}/metrics.json".format(variant=variant) for variant in RGM_ABLATION],
    output:
        report(
            R("tables/rgm_ablation.csv"),
            caption="../../report/rgm/ablation_table.rst",
            category="rgm",
            subcategory="tables",
            labels={"table": "ablation on validation images", "experiment": "rgm", "model": "RGM"},
        ),
    log:
        LOG("rgm_ablation_table"),
    benchmark:
        BENCH("rgm_ablation_table")
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=RGM_ABLATION_TABLE,
    script:
        "../../scripts/rgm_ablation_table.py"


rule rgm_samples:
    input:
        mnist32=MNIST32_RGM,
        model=rgm_model_file("official_test", "model.npz"),
    output:
        rgm_model_file("official_test", "samples.npz"),
    log:
        LOG("rgm_samples"),
    benchmark:
        BENCH("rgm_samples")
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=RGM_SAMPLES | rgm_probe("rgm_samples"),
    script:
        "../../scripts/rgm_samples.py"


# Figures: one rule each, drawn from saved arrays and tables only.
rule rgm_figure_reconstructions:
    input:
        rules.rgm_samples.output[0],
    output:
        report(
            R("figures/rgm/reconstructions.png"),
            caption="../../report/rgm/reconstructions.rst",
            category="rgm",
            subcategory="figures",
            labels={"figure": "reconstructions", "experiment": "rgm", "model": "RGM"},
        ),
    log:
        LOG("rgm_figure", "reconstructions"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="reconstructions"),
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_generated:
    input:
        rules.rgm_samples.output[0],
    output:
        report(
            R("figures/rgm/generated.png"),
            caption="../../report/rgm/generated.rst",
            category="rgm",
            subcategory="figures",
            labels={"figure": "generated digits", "experiment": "rgm", "model": "RGM"},
        ),
    log:
        LOG("rgm_figure", "generated"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="generated"),
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_accuracy_elbo:
    input:
        [
            f"{RGM_RUN}/scores.npz".format(protocol=protocol)
            for protocol in ("official_test", "paper_slice", "paper_slice_demo", "validation")
        ],
    output:
        report(
            R("figures/rgm/accuracy_elbo.png"),
            caption="../../report/rgm/accuracy_elbo.rst",
            category="rgm",
            subcategory="figures",
            labels={"figure": "accuracy vs ELBO", "experiment": "rgm", "model": "RGM"},
        ),
    log:
        LOG("rgm_figure", "accuracy_elbo"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="accuracy_elbo", **RGM["figures"]),
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_diagnostics:
    input:
        rgm_model_file("official_test", "stream.npz"),
    output:
        report(
            R("figures/rgm/diagnostics.png"),
            caption="../../report/rgm/diagnostics.rst",
            category="rgm",
            subcategory="figures",
            labels={"figure": "diagnostics", "experiment": "rgm", "model": "RGM"},
        ),
    log:
        LOG("rgm_figure", "diagnostics"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="diagnostics"),
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_ablation:
    input:
        rules.rgm_ablation_table.output[0],
    output:
        report(
            R("figures/rgm/ablation.png"),
            caption="../../report/rgm/ablation.rst",
            category="rgm",
            subcategory="figures",
            labels={"figure": "ablation", "experiment": "rgm", "model": "RGM"},
        ),
    log:
        LOG("rgm_figure", "ablation"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="ablation"),
    script:
        "../../scripts/rgm_figure.py"
