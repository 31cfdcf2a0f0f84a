"""4-level MNIST (values 0..3) for the Potts energy-based models."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.data.cache import build_discrete  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    build_discrete(job.input[0], job.output[0], edges=tuple(job.config["discrete_edges"]))
