"""Train the runs of one (grid, model, seed) of the depth study, one per depth."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.glonet import train_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_job(job.config, job.input[0], list(job.output.metrics), list(job.output.arrays), device=job.device)
