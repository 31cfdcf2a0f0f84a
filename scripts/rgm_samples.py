"""RGM: arrays for the figures (reconstructions per level, generated digits, mixing)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgm import samples  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    samples(job.input.mnist32, job.input.model, job.output[0], json.loads(job.params.section))
