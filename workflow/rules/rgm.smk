# Experiment rgm: the discrete Renormalising Generative Model (Friston et al. 2024) on
# 32x32 MNIST. One fit job (SVD quantiser, fast structure learning on the exemplars,
# active learning over the stream), one evaluation job per protocol, figures from arrays.

include: "rgm_functions.smk"

RGM_PROTOCOLS = ["official_test", "paper_slice"]
RGM_FIGURES = ["reconstructions", "generated", "accuracy_elbo", "accepted"]


register_experiment(
    "rgm",
    runs=lambda: [rgm_run(f"{protocol}/metrics.json") for protocol in RGM_PROTOCOLS],
    required_columns=["protocol", "n_train", "test_accuracy", "confident_half_accuracy",
                      "structure_seconds", "learn_seconds"],
    figures=lambda: [R(f"figures/rgm/{name}.png") for name in RGM_FIGURES],
)


rule rgm:
    input:
        lambda wildcards: experiment_targets("rgm"),


rule rgm_fit:
    input:
        mnist32=MNIST32_RGM,
        subsets=MNIST_SUBSETS,
    output:
        model=rgm_run("model/model.npz"),
        stream=rgm_run("model/stream.npz"),
        fit=rgm_run("model/fit.json"),
    params:
        section=as_json(config["rgm"]),
    log:
        LOG("rgm_fit"),
    benchmark:
        BENCH("rgm_fit")
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/rgm_fit.py"


rule rgm_evaluate:
    input:
        mnist32=MNIST32_RGM,
        model=rules.rgm_fit.output.model,
        fit=rules.rgm_fit.output.fit,
    output:
        metrics=rgm_run("{protocol}/metrics.json"),
        scores=rgm_run("{protocol}/scores.npz"),
    wildcard_constraints:
        protocol="|".join(RGM_PROTOCOLS),
    params:
        section=as_json(config["rgm"]),
        preset=config["preset"],
    log:
        LOG("rgm_evaluate", "{protocol}"),
    benchmark:
        BENCH("rgm_evaluate", "{protocol}")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/rgm_evaluate.py"


rule rgm_samples:
    input:
        mnist32=MNIST32_RGM,
        model=rules.rgm_fit.output.model,
    output:
        rgm_run("model/samples.npz"),
    params:
        section=as_json(config["rgm"]),
    log:
        LOG("rgm_samples"),
    benchmark:
        BENCH("rgm_samples")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/rgm_samples.py"


# Figures: one rule each, drawn from saved arrays only.


rule rgm_figure_reconstructions:
    input:
        rules.rgm_samples.output[0],
    output:
        report(R("figures/rgm/reconstructions.png"), caption="../../report/rgm/reconstructions.rst", category="rgm"),
    params:
        figure="reconstructions",
    log:
        LOG("rgm_figure", "reconstructions"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_generated:
    input:
        rules.rgm_samples.output[0],
    output:
        report(R("figures/rgm/generated.png"), caption="../../report/rgm/generated.rst", category="rgm"),
    params:
        figure="generated",
    log:
        LOG("rgm_figure", "generated"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_accuracy_elbo:
    input:
        [rgm_run(f"{protocol}/scores.npz") for protocol in RGM_PROTOCOLS],
    output:
        report(R("figures/rgm/accuracy_elbo.png"), caption="../../report/rgm/accuracy_elbo.rst", category="rgm"),
    params:
        figure="accuracy_elbo",
    log:
        LOG("rgm_figure", "accuracy_elbo"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/rgm_figure.py"


rule rgm_figure_accepted:
    input:
        rules.rgm_fit.output.stream,
    output:
        report(R("figures/rgm/accepted.png"), caption="../../report/rgm/accepted.rst", category="rgm"),
    params:
        figure="accepted",
    log:
        LOG("rgm_figure", "accepted"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/rgm_figure.py"
