# Report stage: the figures target, the cost table, Snakemake's report and the human
# summary page results/report/index.html. Everything here reads finished results
# (tables, arrays, benchmark files), so rebuilding the report never retrains a model.

include: "report_functions.smk"
import hashlib
from pathlib import Path

from snakemake.io import is_flagged


report: "../../report/workflow.rst"


# Rule files that are not an experiment's: their rules count under these stages.
REPORT_STAGE_OF_FILE = {"data": "data", "tables": "report", "claims": "report", "report": "report"}


# All figures of the enabled experiments. Figure rules read tables and saved arrays only,
# so `snakemake --cores all figures --forcerun results/figures/*/*.png` redraws every
# figure and nothing upstream of it.
rule figures:
    input:
        lambda wildcards: all_figures(),


rule report_costs:
    input:
        lambda wildcards: report_upstream(),
    output:
        jobs=R("tables/costs.csv"),
        summary=R("tables/costs_by_experiment.csv"),
    params:
        results_dir=lambda wildcards, output: str(Path(output[0]).parents[1]),
        rule_stages=lambda wildcards: report_rule_stages(),
        experiments=lambda wildcards: sorted(EXPERIMENTS),
        rule_runs=lambda wildcards: report_rule_runs(),
    log:
        LOG("report_costs"),
    benchmark:
        BENCH("report_costs")
    localrule: True
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_costs.py"


rule report_rulegraph:
    output:
        R("report/rulegraph.dot"),
    params:
        snakefile=workflow.main_snakefile,
        # a new rule or a changed config redraws the graph (a digest keeps the
        # "params have changed" message short)
        rules=lambda wildcards: sorted(report_rule_stages()),
        config_sha256=lambda wildcards: hashlib.sha256(as_json(config).encode()).hexdigest()[:16],
    log:
        LOG("report_rulegraph"),
    benchmark:
        BENCH("report_rulegraph")
    localrule: True
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_rulegraph.py"


rule report_experiment_table:
    input:
        R("tables/{table}.csv"),
    output:
        report(R("report/tables/{table}.html"), caption="../../report/report/experiment_table.rst", category="{table}"),
    wildcard_constraints:
        table="|".join(EXPERIMENTS) or "none",
    params:
        titles=lambda wildcards: [f"{wildcards.table}: one row per run"],
        required_columns=lambda wildcards: EXPERIMENTS[wildcards.table]["required_columns"],
    log:
        LOG("report_table", "{table}"),
    localrule: True
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_table.py"


rule report_claims_table:
    input:
        R("tables/claims.csv"),
    output:
        report(R("report/tables/claims.html"), caption="../../report/report/claims.rst", category="summary"),
    params:
        titles=["Claims: published values against ours"],
    log:
        LOG("report_table", "claims"),
    localrule: True
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_table.py"


rule report_costs_table:
    input:
        rules.report_costs.output.summary,
        rules.report_costs.output.jobs,
    output:
        report(R("report/tables/costs_by_experiment.html"), caption="../../report/report/costs.rst", category="summary"),
        report(R("report/tables/costs.html"), caption="../../report/report/costs_jobs.rst", category="summary"),
    params:
        titles=["Cost per experiment", "Cost per job"],
    log:
        LOG("report_table", "costs"),
    localrule: True
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_table.py"


rule report_page:
    input:
        tables=lambda wildcards: [R(f"tables/{name}.csv") for name in enabled_experiments()],
        figures=lambda wildcards: all_figures(),
        claims=lambda wildcards: report_claims_csv(),
        costs=rules.report_costs.output.jobs,
        costs_summary=rules.report_costs.output.summary,
        rulegraph=rules.report_rulegraph.output[0],
    output:
        R("report/index.html"),
    params:
        results_dir=lambda wildcards, output: str(Path(output[0]).parents[1]),
        experiments=lambda wildcards: report_page_experiments(),
        rule_stages=lambda wildcards: report_rule_stages(),
        caption_patterns=lambda wildcards: report_caption_patterns(),
        preset=config.get("preset", "custom"),
        repo_root=str(Path(workflow.basedir)),
        graphviz=config["report"]["graphviz"],
        max_table_rows=config["report"]["max_table_rows"],
    log:
        LOG("report_page"),
    benchmark:
        BENCH("report_page")
    localrule: True
    threads: 1
    resources:
        **family_resources("report"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_page.py"
