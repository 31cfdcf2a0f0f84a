"""RGM: one figure from saved arrays (which one is the rule's params.figure)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.rgm import draw  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    draw(job.params.figure, list(job.input), job.output[0])
