"""Train the reference MNIST classifier; save weights + checksum, test feature statistics, metrics."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.reference_classifier import train_reference_classifier  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    train_reference_classifier(job.input[0], job.output.model, job.output.stats, job.output.metrics,
                               json.loads(job.params.section), device=job.params.device, preset=job.params.preset)
