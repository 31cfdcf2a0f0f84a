# Definitions of the claims stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything claims.smk uses is defined here.

# Published claims (papers, seed documents, official repositories) and the project's own
# targets, in the same format, judged into two separate tables.
CLAIM_SETS = {
    "claims": Path(workflow.basedir) / "src" / "rgbench" / "claims",
    "targets": Path(workflow.basedir) / "src" / "rgbench" / "targets",
}


def claim_files(kind):
    """The entry files of a set, globbed when the DAG is built (a new file is picked up)."""
    return sorted(str(path) for path in CLAIM_SETS[kind].glob("*.yaml"))


def claims_tables():
    """Experiment -> table path, for every registered experiment this config runs."""
    return {name: R(f"tables/{name}.csv") for name in EXPERIMENTS if enabled(name)}


def claims_targets():
    return [R("tables/claims.csv"), R("tables/targets.csv")]
