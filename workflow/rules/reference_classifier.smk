# Experiment reference_classifier: the pipeline's own MNIST classifier, the yardstick of
# every sample-quality number (fid, recognisable_fraction, conditional_recognition).
# Its outputs are REFERENCE_MODEL and REFERENCE_STATS (defined in common.smk).

REFERENCE_DIR = R("runs/reference_classifier/main")

register_experiment(
    "reference_classifier",
    runs=lambda: [f"{REFERENCE_DIR}/metrics.json"],
    required_columns=["test_accuracy"],
    figures=lambda: [R("figures/reference_classifier/training.png")],
)


rule reference_classifier_train:
    input:
        MNIST28,
    output:
        model=REFERENCE_MODEL,
        checksum=f"{REFERENCE_MODEL}.sha256",
        stats=REFERENCE_STATS,
        metrics=f"{REFERENCE_DIR}/metrics.json",
    params:
        section=as_json({k: v for k, v in config["reference_classifier"].items() if k != "enabled"}),
        device=config["device"],
        preset=config["preset"],
    log:
        LOG("reference_classifier_train"),
    benchmark:
        BENCH("reference_classifier_train")
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/reference_classifier_train.py"


rule reference_classifier_figure:
    input:
        metrics=f"{REFERENCE_DIR}/metrics.json",
        stats=REFERENCE_STATS,
    output:
        report(
            R("figures/reference_classifier/training.png"),
            caption="../../report/reference_classifier/training.rst",
            category="reference_classifier",
        ),
    log:
        LOG("reference_classifier_figure"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/reference_classifier_figure.py"


rule reference_classifier:
    input:
        lambda wildcards: experiment_targets("reference_classifier"),
