"""Train one reference MNIST classifier (one seed) and its FID statistics."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.reference_classifier import train_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_job(job.config, job.input[0], job.output.model, job.output.stats, job.output.metrics,
              run_id=job.wildcards.run_id, device=job.device)
