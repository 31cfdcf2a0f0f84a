"""The three Spatial RGM experiments on a trained model: metrics.json and the figure arrays."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.spatial_rgm import evaluate  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    evaluate(job.input.model, job.input.train, job.input.mnist, job.input.reference, job.output.metrics,
             job.output.arrays, json.loads(job.params.section), device_preference=job.params.device)
