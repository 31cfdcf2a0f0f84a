# Experiment sampler_bench (seed 003 / the Potts issue): flips per ns of Gibbs samplers on
# the 28x28 4-level Potts grid. One cheap job per (implementation, chains); THRML rows
# exist only where the optional thrml package is importable. The thorough run is
# benchmarks/potts_sampler_speed.py.

include: "sampler_bench_functions.smk"
import importlib.util

SAMPLER_RUN = R("runs/sampler_bench/impl-{implementation}_chains-{chains}")


register_experiment(
    "sampler_bench",
    runs=lambda: [f"{SAMPLER_RUN}/metrics.json".format(implementation=i, chains=c) for i, c in sampler_bench_rows()],
    required_columns=["implementation", "chains", "sweeps", "flips_per_ns"],
    figures=lambda: [R("figures/sampler_bench/flips_per_ns.png")],
)


rule sampler_bench_run:
    output:
        f"{SAMPLER_RUN}/metrics.json",
    wildcard_constraints:
        implementation="block|block_torch|sequential|thrml",
        chains="[0-9]+",
    params:
        section=as_json({k: v for k, v in config["sampler_bench"].items() if k in ("seconds_per_run", "repeats", "seed")}),
        device=config["device"],
    log:
        LOG("sampler_bench_run", "impl-{implementation}_chains-{chains}"),
    benchmark:
        BENCH("sampler_bench_run", "impl-{implementation}_chains-{chains}")
    threads: family_threads("evaluate")
    resources:
        **family_resources("evaluate"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/sampler_bench_run.py"


rule sampler_bench_figure:
    input:
        R("tables/sampler_bench.csv"),
    output:
        report(R("figures/sampler_bench/flips_per_ns.png"), caption="../../report/sampler_bench/flips_per_ns.rst",
               category="sampler_bench"),
    log:
        LOG("sampler_bench_figure"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/sampler_bench_figure.py"


rule sampler_bench:
    input:
        lambda wildcards: experiment_targets("sampler_bench"),
