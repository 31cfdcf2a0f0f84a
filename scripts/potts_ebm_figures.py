"""Sample grids, digits against sweeps, training curves and the NLL comparison of potts_ebm."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.potts_ebm import figures_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    figures_job(job.config, job.input.table, list(job.input.samples), list(job.input.thrml), list(job.input.epochs),
                dict(job.output.items()))
