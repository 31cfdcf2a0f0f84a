"""Evaluate one RG-Flow run: test BPD and the arrays of every figure."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgflow import evaluate_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    evaluate_job(job.config, job.input.model, job.input.data, job.output.metrics, job.output.arrays,
                 run_id=job.wildcards.run_id, device=job.device)
