"""Figure: flips per ns of each Gibbs sampler against the number of parallel chains."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.sampler_bench import figures_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    figures_job(job.config, job.input[0], job.output[0])
