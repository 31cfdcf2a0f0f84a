# Definitions of the report stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything report.smk uses is defined here.
from snakemake.io import is_flagged

# Rule files that are not an experiment's: their rules count under these stages.
REPORT_STAGE_OF_FILE = {"data": "data", "tables": "report", "claims": "report", "report": "report"}


def report_targets():
    if not enabled("report"):
        return []
    tables = [R(f"report/tables/{name}.html") for name in enabled_experiments()]
    tables += [R("report/tables/costs.html"), R("report/tables/claims.html"), R("report/tables/targets.html")]
    return tables + report_paper_cost() + [R("report/index.html")]


def report_output_rules():
    """Rules that only draw figures or write tables and report pages."""
    prefixes = tuple(R(part) for part in ("figures/", "tables/", "report/"))
    return sorted(
        rule_.name
        for rule_ in workflow.rules
        if rule_.output and all(str(item).startswith(prefixes) for item in rule_.output)
    )


def report_paper_cost():
    """The paper preset's cost table: a probe's output only (docs/paper-preset.md)."""
    return [R("tables/paper_cost.csv")] if probing() else []


def report_rule_stages():
    """Rule name -> the experiment (or data / report stage) whose rule file defines it."""
    stages = {}
    for rule_ in workflow.rules:
        stem = Path(str(rule_.snakefile)).stem
        stages[rule_.name] = stem if stem in EXPERIMENTS else REPORT_STAGE_OF_FILE.get(stem, "pipeline")
    return stages


def report_rule_runs():
    """Rule -> its benchmark pattern and the run directories (under runs/) its outputs go to."""
    runs_prefix = R("runs/")
    spec = {}
    for rule_ in workflow.rules:
        if not rule_.benchmark:
            continue
        run_dirs = sorted({str(Path(str(item)).parent) for item in rule_.output if str(item).startswith(runs_prefix)})
        spec[rule_.name] = {"benchmark": str(rule_.benchmark), "run_dirs": run_dirs}
    return spec


def report_caption_patterns():
    """[output pattern, caption file] of every output marked with report(...) in the workflow."""
    patterns = []
    for rule_ in workflow.rules:
        for item in rule_.output:
            if is_flagged(item, "report") and item.flags["report"].caption is not None:
                caption = item.flags["report"].caption
                path = caption.get_path_or_uri(secret_free=True) if hasattr(caption, "get_path_or_uri") else caption
                patterns.append([str(item), str(path)])
    return patterns


def report_scorecards():
    """The page's data file (report.scorecards), relative to the checkout."""
    return str(Path(workflow.basedir) / config["report"]["scorecards"])


def report_caption_files():
    """The caption files that exist: the page quotes them, so an edit rebuilds it."""
    return sorted({path for _, path in report_caption_patterns() if Path(path).exists()})


def report_upstream():
    """Every result the report summarises; the cost table waits for all of them."""
    files = list(data_targets()) + claims_targets()
    for name in enabled_experiments():
        files += experiment_targets(name)
    return files


def report_page_experiments():
    return {
        name: {"table": R(f"tables/{name}.csv"), "figures": list(EXPERIMENTS[name]["figures"]())}
        for name in enabled_experiments()
    }
