"""RGM: reconstructions per level, generated digits and class mixing, for the figures."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgm import samples_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    samples_job(job.config, job.input.mnist32, job.input.model, job.output[0])
