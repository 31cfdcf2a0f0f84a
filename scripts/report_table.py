"""Render one CSV table as a standalone HTML page for Snakemake's report."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.summary.summary import write_table_page  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    for csv, html, title in zip(job.input, job.output, job.config["titles"], strict=True):
        write_table_page(csv, html, title=title)
