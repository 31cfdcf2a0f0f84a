"""Test NLL, timed samples, their reference-classifier scores and the memorisation check of one generator."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.generative import evaluate_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    evaluate_job(job.config["run"], job.config["evaluation"], job.input.mnist, job.input.model,
                 job.input.reference_model, job.input.reference_stats, job.output.metrics, job.output.samples,
                 run_id=job.wildcards.run_id, device=job.device)
