"""Fetch and verify the four MNIST files (official mirrors or a local directory)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.data.mnist import fetch_mnist  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    # mnist_source is a locator (not a tracked setting); the hand-off, the SHA-256 each file
    # must have, decides.
    fetch_mnist(job.workflow_config["mnist_source"], Path(job.output[0]).parent, expected=dict(job.config))
