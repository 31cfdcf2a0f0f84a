# Experiment reference_classifier: the pipeline's own MNIST classifier, one per seed (their
# spread is the accuracy's noise). The first seed's classifier is the yardstick of every
# sample-quality number (fid, recognisable_fraction, conditional_recognition).

REFERENCE = config["reference_classifier"]
# a probe trains the first seed only and counts the others as its copies
REFERENCE_RUNS = {run_id(seed=seed): seed for seed in probe_subset(REFERENCE["seeds"])}
REFERENCE_REPRESENTS = len(REFERENCE["seeds"]) // len(REFERENCE_RUNS)
REFERENCE_RUN = R("runs/reference_classifier/{run_id}")
REFERENCE_TRAIN_KEYS = [
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "max_shift",
    "channels1",
    "channels2",
    "hidden",
    "dropout",
    "outlier_fraction",
    "fid_samples",
]
# The yardstick's files, read by every experiment that scores samples.
REFERENCE_MODEL = f"{REFERENCE_RUN}/model.pt".format(run_id=run_id(seed=REFERENCE["seeds"][0]))
REFERENCE_STATS = f"{REFERENCE_RUN}/reference_stats.npz".format(run_id=run_id(seed=REFERENCE["seeds"][0]))


register_experiment(
    "reference_classifier",
    runs=lambda: [f"{REFERENCE_RUN}/metrics.json".format(run_id=rid) for rid in REFERENCE_RUNS],
    required_columns=["test_accuracy"],
    figures=lambda: [R("figures/reference_classifier/training.png")],
)


rule reference_classifier:
    input:
        lambda wildcards: experiment_targets("reference_classifier"),


rule reference_classifier_train:
    input:
        MNIST28,
    output:
        model=f"{REFERENCE_RUN}/model.pt",
        checksum=f"{REFERENCE_RUN}/model.pt.sha256",
        stats=f"{REFERENCE_RUN}/reference_stats.npz",
        metrics=f"{REFERENCE_RUN}/metrics.json",
    log:
        LOG("reference_classifier_train", "{run_id}"),
    benchmark:
        BENCH("reference_classifier_train", "{run_id}")
    wildcard_constraints:
        run_id=one_of(REFERENCE_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    params:
        config=lambda wildcards: settings(REFERENCE, *REFERENCE_TRAIN_KEYS, seed=REFERENCE_RUNS[wildcards.run_id])
        | probe_handoff(
            "reference_classifier_train",
            "train",
            BENCH("reference_classifier_train", wildcards.run_id),
            REFERENCE_REPRESENTS,
        ),
    script:
        "../../scripts/reference_classifier_train.py"


rule reference_classifier_figure:
    input:
        metrics=lambda wildcards: EXPERIMENTS["reference_classifier"]["runs"](),
    output:
        report(
            R("figures/reference_classifier/training.png"),
            caption="../../report/reference_classifier/training.rst",
            category="reference_classifier",
            subcategory="figures",
            labels={"figure": "training", "experiment": "reference_classifier", "model": "reference CNN"},
        ),
    log:
        LOG("reference_classifier_figure"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(),
    script:
        "../../scripts/reference_classifier_figure.py"
