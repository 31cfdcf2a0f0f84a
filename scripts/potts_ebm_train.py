"""Train one Potts model (PCD) or fit the independent model; the checkpoint stays beside it."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.potts_ebm import train_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_job(job.input[0], job.output.model, job.output.epochs, json.loads(job.params.section),
              job.wildcards.model, int(job.wildcards.seed), device=job.params.device,
              checkpoint_path=job.params.checkpoint)
