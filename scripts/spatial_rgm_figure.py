"""Spatial RGM: one figure (named by the rule's config) from the evaluation's arrays or metrics."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.spatial_rgm import figures_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    figures_job(job.config, job.input, job.output[0])
