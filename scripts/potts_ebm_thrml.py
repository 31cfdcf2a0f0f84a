"""THRML samples of one trained model, scored like our sampler's; the THRML row's metrics.json."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.potts_ebm_thrml import thrml_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    thrml_job(job.config["run"], job.config["thrml"], job.input.mnist, job.input.model, job.input.reference_model,
              job.input.reference_stats, job.output.metrics, job.output.samples, run_id=job.wildcards.run_id,
              device=job.device)
