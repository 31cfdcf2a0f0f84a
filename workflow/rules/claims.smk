# Claims: every src/rgbench/claims/*.yaml joined with the experiment tables into
# tables/claims.csv (verdicts reproduced / not_reproduced / not_run).
from pathlib import Path as _ClaimsPath

CLAIMS_DIR = _ClaimsPath(workflow.basedir) / "src" / "rgbench" / "claims"


def claims_files():
    """The claims files, globbed when the DAG is built (so a new file is picked up)."""
    return sorted(str(path) for path in CLAIMS_DIR.glob("*.yaml"))


def claims_tables():
    """Experiment -> table path, for every registered experiment this config runs."""
    return {name: R(f"tables/{name}.csv") for name in EXPERIMENTS if enabled(name)}


def claims_targets():
    return [R("tables/claims.csv")]


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
