"""Train one Spatial RGM (model + training metrics; the checkpoint stays beside them)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.spatial_rgm import train  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train(job.input.mnist, job.output.model, job.output.train, json.loads(job.params.section),
          epochs=int(job.wildcards.epochs), seed=int(job.wildcards.seed), device_preference=job.params.device)
