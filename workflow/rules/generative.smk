# Experiment generative (seed 003's question): traditional generators of 4-level MNIST (MADE,
# categorical VAE) set beside the energy-based models. Per (model, seed): train (Adam, the
# best epoch by validation NLL) -> evaluate (test NLL, timed samples, the shared scores,
# memorisation). Then one comparison of every generator, EBMs included: tables/generative.csv,
# the answer per quality level and the quality-versus-cost figure.


include: "generative_functions.smk"


register_experiment(
    "generative",
    runs=generative_metrics,
    required_columns=GEN_COLUMNS,
    figures=lambda: [R(f"figures/generative/{name}.png") for name in GEN_FIGURES],
    extra_targets=lambda: [R("tables/generative_answer.csv"), R("tables/generative_answer.md")],
    own_table=True,
)


rule generative:
    input:
        lambda wildcards: experiment_targets("generative"),


rule generative_train:
    input:
        MNIST4,
    output:
        model=f"{GEN_RUN}/model.pt",
    log:
        LOG("generative_train", "{run_id}"),
    benchmark:
        BENCH("generative_train", "{run_id}")
    wildcard_constraints:
        run_id=one_of(GEN_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("train")
    resources:
        **family_resources("train"),
    params:
        config=generative_train_settings,
    script:
        "../../scripts/generative_train.py"


rule generative_evaluate:
    input:
        mnist=MNIST4,
        model=f"{GEN_RUN}/model.pt",
        reference_model=REFERENCE_MODEL,
        reference_stats=REFERENCE_STATS,
    output:
        metrics=f"{GEN_RUN}/metrics.json",
        samples=f"{GEN_RUN}/samples.npz",
    log:
        LOG("generative_evaluate", "{run_id}"),
    benchmark:
        BENCH("generative_evaluate", "{run_id}")
    wildcard_constraints:
        run_id=one_of(GEN_RUNS),
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    params:
        config=generative_evaluate_settings,
    script:
        "../../scripts/generative_evaluate.py"


rule generative_table:
    input:
        runs=generative_metrics(),
        ebm=generative_ebm_table(),
    output:
        table=R("tables/generative.csv"),
        answer=R("tables/generative_answer.csv"),
        sentences=R("tables/generative_answer.md"),
    log:
        LOG("generative_table"),
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=settings(GEN["comparison"], *GEN["comparison"], required_columns=GEN_COLUMNS),
    script:
        "../../scripts/generative_table.py"


rule generative_figures:
    input:
        table=R("tables/generative.csv"),
        samples=generative_first_seed_samples(),
    output:
        quality_cost=report(
            R("figures/generative/quality_cost.png"),
            caption="../../report/generative/quality_cost.rst",
            category="generative",
            subcategory="figures",
            labels={"figure": "quality vs cost", "experiment": "generative", "model": "every generator"},
        ),
        samples=report(
            R("figures/generative/samples.png"),
            caption="../../report/generative/samples.rst",
            category="generative",
            subcategory="figures",
            labels={"figure": "samples", "experiment": "generative", "model": "MADE and VAE"},
        ),
    log:
        LOG("generative_figures"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(
            models=[GEN_RUNS[key]["model"] for key in GEN_RUNS if GEN_RUNS[key]["seed"] == GEN["seeds"][0]],
        ),
    script:
        "../../scripts/generative_figures.py"
