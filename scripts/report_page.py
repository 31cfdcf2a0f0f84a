"""The human summary page results/report/index.html (the reproduction scorecard)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.summary.summary import build_summary_page  # noqa: E402
from rgbench.runtime import get_logger  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    settings = job.config
    info = build_summary_page(
        job.output[0],
        results_dir=settings["results_dir"],
        experiments=settings["experiments"],
        scorecards=job.input.scorecards,
        claims_csv=job.input.claims,
        targets_csv=job.input.targets,
        costs_csv=job.input.costs,
        costs_summary_csv=job.input.costs_summary,
        paper_cost_csv=job.input.paper_cost[0] if len(job.input.paper_cost) else None,
        rulegraph_dot=job.input.rulegraph,
        rule_stages=settings["rule_stages"],
        caption_patterns=settings["caption_patterns"],
        preset=settings["preset"],
        repo_root=settings["repo_root"],
        config=job.workflow_config,
        use_graphviz=settings["graphviz"],
        max_table_rows=settings["max_table_rows"],
        thumbnail_px=settings["thumbnail_px"],
    )
    get_logger("report").info("summary page: %s", info)
