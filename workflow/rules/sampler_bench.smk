# Experiment sampler_bench (seed 003): flips per ns of Gibbs samplers on the 28x28 4-level
# Potts lattice (our numba block sampler, the sequential reference, THRML), the seed's
# THRML-vs-PyTorch energy check and its naive-vs-vectorised energy timing. One job times
# every row, one after the other, so no row times another's work. The thorough run is benchmarks/potts_sampler_speed.py.


include: "sampler_bench_functions.smk"


register_experiment(
    "sampler_bench",
    runs=lambda: [f"{SAMPLER_RUN}/metrics.json".format(run_id=key) for key in SAMPLER_RUNS],
    required_columns=["implementation", "chains", "sweeps", "flips_per_ns"],
    figures=lambda: [R("figures/sampler_bench/flips_per_ns.png")],
)


rule sampler_bench:
    input:
        lambda wildcards: experiment_targets("sampler_bench"),


# A CPU benchmark: family `cpu`, never a GPU allocation.
rule sampler_bench_run:
    output:
        [f"{SAMPLER_RUN}/metrics.json".format(run_id=key) for key in SAMPLER_RUNS],
    log:
        LOG("sampler_bench_run", "all"),
    benchmark:
        BENCH("sampler_bench_run", "all")
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("cpu")
    resources:
        **family_resources("cpu"),
    params:
        config=SAMPLER_SETTINGS,
    script:
        "../../scripts/sampler_bench_run.py"


rule sampler_bench_figure:
    input:
        R("tables/sampler_bench.csv"),
    output:
        report(
            R("figures/sampler_bench/flips_per_ns.png"),
            caption="../../report/sampler_bench/flips_per_ns.rst",
            category="sampler_bench",
            subcategory="figures",
            labels={"figure": "flips per ns", "experiment": "sampler_bench", "model": "Gibbs samplers"},
        ),
    log:
        LOG("sampler_bench_figure"),
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=figure_settings(),
    script:
        "../../scripts/sampler_bench_figure.py"
