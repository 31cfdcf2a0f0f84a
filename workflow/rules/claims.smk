# Claims: every src/rgbench/claims/*.yaml joined with the experiment tables into
# tables/claims.csv (verdicts reproduced / not_reproduced / not_run).

include: "claims_functions.smk"
from pathlib import Path as _ClaimsPath

CLAIMS_DIR = _ClaimsPath(workflow.basedir) / "src" / "rgbench" / "claims"


rule claims:
    input:
        claims=lambda wildcards: claims_files(),
        tables=lambda wildcards: list(claims_tables().values()),
    output:
        R("tables/claims.csv"),
    params:
        tables=lambda wildcards: as_json(claims_tables()),
        enabled=as_json({name: enabled(name) for name in EXPERIMENTS}),
        preset=config["preset"],
    log:
        LOG("claims"),
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/claims_table.py"
