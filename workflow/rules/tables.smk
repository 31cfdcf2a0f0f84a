# Tables: every experiment's metrics.json files joined into tables/<experiment>.csv.


rule experiment_table:
    input:
        lambda wildcards: EXPERIMENTS[wildcards.experiment]["runs"](),
    output:
        R("tables/{experiment}.csv"),
    wildcard_constraints:
        experiment="|".join(EXPERIMENTS) or "none",
    params:
        required_columns=lambda wildcards: EXPERIMENTS[wildcards.experiment]["required_columns"],
    log:
        LOG("experiment_table", "{experiment}"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/aggregate_table.py"
