"""Train one traditional generator (MADE or VAE) of 4-level MNIST; keep its best epoch by validation NLL."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.generative import train_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_job(job.config, job.input[0], job.output.model, device=job.device)
