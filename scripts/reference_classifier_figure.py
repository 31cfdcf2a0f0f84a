"""Figure: the reference classifiers' training curves and the FID scale (floor vs independent pixels)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.reference_classifier import figures_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    figures_job(job.config, list(job.input.metrics), job.output[0])
