"""RGM ablation: one variant (the defaults with one ingredient switched off), scored on validation images."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgm import ablation_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    ablation_job(job.config, job.input.mnist28, job.input.mnist32, job.output.metrics)
