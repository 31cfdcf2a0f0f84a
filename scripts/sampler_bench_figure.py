"""flips/ns against chain count for every sampler implementation."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.potts_ebm import sampler_figure  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    sampler_figure(job.input[0], job.output[0])
