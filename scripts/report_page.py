"""The human summary page results/report/index.html."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.report.summary import build_summary_page  # noqa: E402
from rgbench.runtime import get_logger  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    claims = job.input.claims[0] if len(job.input.claims) else None
    info = build_summary_page(
        job.output[0],
        results_dir=job.params.results_dir,
        experiments=job.params.experiments,
        claims_csv=claims,
        costs_csv=job.input.costs,
        costs_summary_csv=job.input.costs_summary,
        rulegraph_dot=job.input.rulegraph,
        rule_stages=job.params.rule_stages,
        caption_patterns=job.params.caption_patterns,
        preset=job.params.preset,
        repo_root=job.params.repo_root,
        config=job.config,
        use_graphviz=job.params.graphviz,
        max_table_rows=job.params.max_table_rows,
    )
    get_logger("report").info("summary page: %s", info)
