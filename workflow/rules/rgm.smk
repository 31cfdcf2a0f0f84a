# Experiment rgm: the discrete Renormalising Generative Model (Friston et al. 2024) on
# 32x32 MNIST. One training job (SVD quantiser, fast structure learning on the exemplars,
# active learning over the stream), one evaluation job per protocol, figures from arrays.
# numpy code: family `cpu`, never a GPU allocation.


include: "rgm_functions.smk"


register_experiment(
    "rgm",
    runs=lambda: [f"{RGM_RUN}/metrics.json".format(run_id=protocol) for protocol in RGM_RUNS],
    required_columns=[
        "protocol",
        "n_train",
        "test_accuracy",
        "confident_half_accuracy",
        "structure_seconds",
        "learn_seconds",
    ],
    figures=lambda: [R(f"figures/rgm/{name}.png") for name in RGM_FIGURES],
)


rule rgm:
    input:
        lambda wildcards: experiment_targets("rgm"),


rule rgm_train:
    input:
        mnist32=MNIST32_RGM,
        subsets=MNIST_SUBSETS,
    output:
        model=f"{RGM_MODEL_DIR}/model.npz",
        stream=f"{RGM_MODEL_DIR}/stream.npz",
        fit=f"{RGM_MODEL_DIR}/fit.json",
    log:
        LOG("rgm_train"),
    benchmark:
        BENCH("rgm_train")
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=RGM_TRAIN,
    script:
        "../../scripts/rgm_train.py"


rule rgm_evaluate:
    input:
        mnist32=MNIST32_RGM,
        model=rules.rgm_train.output.model,
        fit=rules.rgm_train.output.fit,
    output:
        metrics=f"{RGM_RUN}/metrics.json",
        scores=f"{RGM_RUN}/scores.npz",
    log:
        LOG("rgm_evaluate", "{run_id}"),
    benchmark:
        BENCH("rgm_evaluate", "{run_id}")
    wildcard_constraints:
        run_id=one_of(RGM_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=lambda wildcards: RGM_RUNS[wildcards.run_id],
    script:
        "../../scripts/rgm_evaluate.py"


rule rgm_samples:
    input:
        mnist32=MNIST32_RGM,
        model=rules.rgm_train.output.model,
    output:
        f"{RGM_MODEL_DIR}/samples.npz",
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
        config=RGM_SAMPLES,
    script:
        "../../scripts/rgm_samples.py"


# Figures: one rule each, drawn from saved arrays only.


rule rgm_figure_reconstructions:
    input:
        rules.rgm_samples.output[0],
    output:
        report(
            R("figures/rgm/reconstructions.png"),
            caption="../../report/rgm/reconstructions.rst",
            category="rgm",
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
        [f"{RGM_RUN}/scores.npz".format(run_id=protocol) for protocol in RGM_PROTOCOLS],
    output:
        report(
            R("figures/rgm/accuracy_elbo.png"),
            caption="../../report/rgm/accuracy_elbo.rst",
            category="rgm",
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


rule rgm_figure_accepted:
    input:
        rules.rgm_train.output.stream,
    output:
        report(
            R("figures/rgm/accepted.png"),
            caption="../../report/rgm/accepted.rst",
            category="rgm",
        ),
    log:
        LOG("rgm_figure", "accepted"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(figure="accepted"),
    script:
        "../../scripts/rgm_figure.py"
