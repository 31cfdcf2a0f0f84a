# Tables: every experiment's metrics.json files joined into tables/<experiment>.csv.


rule experiment_table:
    input:
        lambda wildcards: EXPERIMENTS[wildcards.experiment]["runs"](),
    output:
        R("tables/{experiment}.csv"),
    log:
        LOG("experiment_table", "{experiment}"),
    wildcard_constraints:
        experiment=one_of([name for name, spec in EXPERIMENTS.items() if not spec["own_table"]]),
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=lambda wildcards: {"required_columns": EXPERIMENTS[wildcards.experiment]["required_columns"]},
    script:
        "../../scripts/aggregate_table.py"
