# Claims: every src/rgbench/claims/*.yaml (published claims) and src/rgbench/targets/*.yaml
# (the project's own targets) judged on the experiment tables: tables/claims.csv and
# tables/targets.csv (verdicts reproduced / not_reproduced / inconclusive / not_run). A few
# measures are derived from the runs' metrics.json beside each table (runs/<experiment>/,
# rgbench.evaluation.claims.DERIVED_COLUMNS); every table depends on those files.


include: "claims_functions.smk"


rule claims:
    input:
        claims=lambda wildcards: claim_files("claims"),
        targets=lambda wildcards: claim_files("targets"),
        tables=lambda wildcards: list(claims_tables().values()),
    output:
        claims=R("tables/claims.csv"),
        targets=R("tables/targets.csv"),
    log:
        LOG("claims"),
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=lambda wildcards: {
            "tables": claims_tables(),
            "enabled": {name: enabled(name) for name in EXPERIMENTS},
            "preset": config["preset"],
            "probe": probing(),
        },
    script:
        "../../scripts/claims_table.py"
