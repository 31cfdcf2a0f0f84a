"""Likelihood (AIS), pseudo-likelihood, samples and mixing diagnostics of one trained model."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.potts_ebm import analyse_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    analyse_job(job.config, job.input.mnist, job.input.model, job.output.analysis, job.output.samples)
