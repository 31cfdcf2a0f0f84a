"""Sample grids, training curves and the NLL comparison of the potts_ebm experiment."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.potts_ebm import nll_figure, samples_figure, training_figure  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    samples_figure(list(job.input.samples), job.params.models, job.output.samples)
    training_figure(list(job.input.epochs), job.params.trained, job.output.training)
    nll_figure(job.input.table, job.output.nll)
