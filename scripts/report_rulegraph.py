"""The workflow's rule graph (dot source), from `snakemake --rulegraph` with this run's config."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.io import write_text_atomic  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.summary.rulegraph import parse_dot, rulegraph_dot  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    dot = rulegraph_dot(job.config["snakefile"], os.getcwd(), job.workflow_config)
    parse_dot(dot)  # refuse to write a graph the page could not draw
    write_text_atomic(job.output[0], dot)
