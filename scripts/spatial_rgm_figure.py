"""One Spatial RGM figure (abstraction, samples or locality) from the saved arrays."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.spatial_rgm import FIGURES  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    FIGURES[job.params.figure](job.input.arrays, job.output[0])
