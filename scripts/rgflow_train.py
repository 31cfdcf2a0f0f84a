"""Train one RG-Flow run (dataset, prior); resumes from the run's checkpoint."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgflow import train_run  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_run(job.input.data, job.wildcards.dataset, job.wildcards.prior, json.loads(job.params.section),
              model_path=job.output.model, checkpoint_path=job.params.checkpoint, device_pref=job.params.device)
