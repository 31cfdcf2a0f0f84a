"""Train one Spatial RGM (one epochs value, one seed)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.spatial_rgm import train_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_job(job.config, job.input.mnist, job.output.model, job.output.train, device=job.device)
