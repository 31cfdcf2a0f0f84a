# Report stage: the figures target, the cost table, Snakemake's report and the human
# summary page results/report/index.html. Everything here reads finished results
# (tables, arrays, benchmark files), so rebuilding the report never retrains a model.


include: "report_functions.smk"


report: "../../report/workflow.rst"


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
    log:
        LOG("report_costs"),
    benchmark:
        BENCH("report_costs")
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=lambda wildcards: {
            "results_dir": RESULTS,
            "rule_stages": report_rule_stages(),
            "experiments": sorted(EXPERIMENTS),
            "rule_runs": report_rule_runs(),
        },
    script:
        "../../scripts/report_costs.py"


# The paper preset's cost, scaled from the probe's measurements (probe runs only).
rule report_paper_cost:
    input:
        lambda wildcards: report_upstream(),
    output:
        R("tables/paper_cost.csv"),
    log:
        LOG("report_paper_cost"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=lambda wildcards: {
            "results_dir": RESULTS,
            "resources": config["resources"],
            "gpu": PROBE["gpu"],
            "margins": PROBE["margins"],
            "rule_stages": report_rule_stages(),
            "report_rules": report_output_rules(),
        },
    script:
        "../../scripts/report_paper_cost.py"


rule report_rulegraph:
    output:
        R("report/rulegraph.dot"),
    log:
        LOG("report_rulegraph"),
    benchmark:
        BENCH("report_rulegraph")
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        # what decides the graph: the rules, and which experiments (and so which rules) run
        config=lambda wildcards: {
            "snakefile": workflow.main_snakefile,
            "rules": sorted(report_rule_stages()),
            "enabled": {name: enabled(name) for name in EXPERIMENTS} | {"report": enabled("report")},
        },
    script:
        "../../scripts/report_rulegraph.py"


rule report_experiment_table:
    input:
        R("tables/{table}.csv"),
    output:
        report(
            R("report/tables/{table}.html"),
            caption="../../report/pipeline/experiment_table.rst",
            category="{table}",
            subcategory="tables",
            labels={"table": "one row per run", "experiment": "{table}"},
        ),
    log:
        LOG("report_table", "{table}"),
    wildcard_constraints:
        table=one_of(EXPERIMENTS),
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=lambda wildcards: {"titles": [f"{wildcards.table}: one row per run"]},
    script:
        "../../scripts/report_table.py"


rule report_claims_table:
    input:
        claims=R("tables/claims.csv"),
        targets=R("tables/targets.csv"),
    output:
        report(
            R("report/tables/claims.html"),
            caption="../../report/pipeline/claims.rst",
            category="summary",
            labels={"table": "published claims", "experiment": "all"},
        ),
        report(
            R("report/tables/targets.html"),
            caption="../../report/pipeline/targets.rst",
            category="summary",
            labels={"table": "project targets", "experiment": "all"},
        ),
    log:
        LOG("report_table", "claims"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config={"titles": ["Published claims against our measurements", "The project's own targets (not claims)"]},
    script:
        "../../scripts/report_table.py"


rule report_costs_table:
    input:
        rules.report_costs.output.summary,
        rules.report_costs.output.jobs,
    output:
        report(
            R("report/tables/costs_by_experiment.html"),
            caption="../../report/pipeline/costs.rst",
            category="summary",
            labels={"table": "cost per experiment", "experiment": "all"},
        ),
        report(
            R("report/tables/costs.html"),
            caption="../../report/pipeline/costs_jobs.rst",
            category="summary",
            labels={"table": "cost per job", "experiment": "all"},
        ),
    log:
        LOG("report_table", "costs"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config={"titles": ["Cost per experiment", "Cost per job"]},
    script:
        "../../scripts/report_table.py"


rule report_page:
    input:
        tables=lambda wildcards: [R(f"tables/{name}.csv") for name in enabled_experiments()],
        figures=lambda wildcards: all_figures(),
        extras=lambda wildcards: [f for name in enabled_experiments() for f in EXPERIMENTS[name]["extra_targets"]()],
        claims=R("tables/claims.csv"),
        targets=R("tables/targets.csv"),
        costs=rules.report_costs.output.jobs,
        costs_summary=rules.report_costs.output.summary,
        paper_cost=lambda wildcards: report_paper_cost(),
        rulegraph=rules.report_rulegraph.output[0],
        scorecards=lambda wildcards: report_scorecards(),
        captions=lambda wildcards: report_caption_files(),
    output:
        report(
            R("report/index.html"),
            caption="../../report/pipeline/index.rst",
            category="summary",
            labels={"table": "scorecard page (index.html)", "experiment": "all"},
        ),
    log:
        LOG("report_page"),
    benchmark:
        BENCH("report_page")
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("report"),
    params:
        config=lambda wildcards: {
            "results_dir": RESULTS,
            "experiments": report_page_experiments(),
            "rule_stages": report_rule_stages(),
            "caption_patterns": report_caption_patterns(),
            "preset": config["preset"],
            "repo_root": str(Path(workflow.basedir)),
            "graphviz": config["report"]["graphviz"],
            "max_table_rows": config["report"]["max_table_rows"],
            "thumbnail_px": config["report"]["thumbnail_px"],
        },
    script:
        "../../scripts/report_page.py"
