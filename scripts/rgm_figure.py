"""RGM: one figure (named by the rule's config) from saved arrays."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.rgm import figures_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    figures_job(job.config, list(job.input), job.output[0])
