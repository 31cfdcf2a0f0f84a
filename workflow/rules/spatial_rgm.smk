# Experiment spatial_rgm (issue 7, seed 001): the Spatial RGM, a Gumbel-softmax hierarchy
# (7x7 local codes z1, digit concept z2), and its three experiments, each a number.
# Rule 1 trains (needs only MNIST); rule 2 runs the experiments with the reference
# classifier; the figures are drawn from rule 2's saved arrays.

include: "spatial_rgm_functions.smk"

SPATIAL_RGM = config.get("spatial_rgm", {})
SPATIAL_RGM_RUN = R("runs/spatial_rgm/epochs-{epochs}_seed-{seed}")


SPATIAL_RGM_FIGURES = ["abstraction", "conditional_samples", "locality"]


register_experiment(
    "spatial_rgm",
    runs=spatial_rgm_runs,
    required_columns=["epochs", "seed", "test_accuracy", "recon_mse", "locality", "conditional_recognition",
                      "diversity", "global_switch_share", "seconds_per_epoch"],
    figures=lambda: [R(f"figures/spatial_rgm/{name}.png") for name in SPATIAL_RGM_FIGURES],
)


rule spatial_rgm:
    input:
        lambda wildcards: experiment_targets("spatial_rgm"),


rule spatial_rgm_train:
    input:
        mnist=MNIST28,
    output:
        model=f"{SPATIAL_RGM_RUN}/model.pt",
        train=f"{SPATIAL_RGM_RUN}/train.json",
    wildcard_constraints:
        epochs=r"\d+",
        seed=r"\d+",
    params:
        section=as_json({key: SPATIAL_RGM.get(key, {}) for key in ("train", "model", "loss", "gumbel")}),
        device=config["device"],
    log:
        LOG("spatial_rgm_train", "epochs-{epochs}_seed-{seed}"),
    benchmark:
        BENCH("spatial_rgm_train", "epochs-{epochs}_seed-{seed}")
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/spatial_rgm_train.py"


rule spatial_rgm_evaluate:
    input:
        model=rules.spatial_rgm_train.output.model,
        train=rules.spatial_rgm_train.output.train,
        mnist=MNIST28,
        reference=REFERENCE_MODEL,
    output:
        metrics=f"{SPATIAL_RGM_RUN}/metrics.json",
        arrays=f"{SPATIAL_RGM_RUN}/arrays.npz",
    wildcard_constraints:
        epochs=r"\d+",
        seed=r"\d+",
    params:
        section=as_json({"evaluation": SPATIAL_RGM.get("evaluation", {})}),
        device=config["device"],
    log:
        LOG("spatial_rgm_evaluate", "epochs-{epochs}_seed-{seed}"),
    benchmark:
        BENCH("spatial_rgm_evaluate", "epochs-{epochs}_seed-{seed}")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/spatial_rgm_evaluate.py"


rule spatial_rgm_figure_abstraction:
    input:
        arrays=lambda wildcards: spatial_rgm_arrays(),
    output:
        report(R("figures/spatial_rgm/abstraction.png"), caption="../../report/spatial_rgm/abstraction.rst",
               category="spatial_rgm"),
    params:
        figure="abstraction",
    log:
        LOG("spatial_rgm_figure", "abstraction"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/spatial_rgm_figure.py"


rule spatial_rgm_figure_samples:
    input:
        arrays=lambda wildcards: spatial_rgm_arrays(),
    output:
        report(R("figures/spatial_rgm/conditional_samples.png"),
               caption="../../report/spatial_rgm/conditional_samples.rst", category="spatial_rgm"),
    params:
        figure="conditional_samples",
    log:
        LOG("spatial_rgm_figure", "conditional_samples"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/spatial_rgm_figure.py"


rule spatial_rgm_figure_locality:
    input:
        arrays=lambda wildcards: spatial_rgm_arrays(),
    output:
        report(R("figures/spatial_rgm/locality.png"), caption="../../report/spatial_rgm/locality.rst",
               category="spatial_rgm"),
    params:
        figure="locality",
    log:
        LOG("spatial_rgm_figure", "locality"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/spatial_rgm_figure.py"
