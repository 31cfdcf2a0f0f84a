"""RGM: classify one evaluation run's images (accuracy, confident-half accuracy, ELBO)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgm import evaluate_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    evaluate_job(job.config, job.input.mnist32, job.input.model, job.input.fit, job.input.stream, job.output.metrics,
                 job.output.scores)
