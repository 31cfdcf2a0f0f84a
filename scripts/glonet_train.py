"""Train one GloNet / MLP / ResMLP run of the depth study (one grid point)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.glonet import train_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_job(job.config, job.input[0], job.output.metrics, job.output.arrays, run_id=job.wildcards.run_id,
              device=job.device)
