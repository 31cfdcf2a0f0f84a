"""RGM: classify one protocol's test images (accuracy, confident half, ELBO per image)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgm import evaluate  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.runtime import describe_device  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    evaluate(job.wildcards.protocol, job.input.mnist32, job.input.model, job.input.fit, job.output.metrics,
             job.output.scores, json.loads(job.params.section), describe_device("cpu"),
             params_extra={"preset": job.params.preset})
