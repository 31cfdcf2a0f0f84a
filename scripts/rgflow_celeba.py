"""Build the 32x32 CelebA cache from the user-supplied rgflow.celeba_dir."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgflow import build_celeba  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    build_celeba(job.params.celeba_dir, job.output[0], job.params.limit)
