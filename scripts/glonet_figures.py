"""The depth study's figures, drawn from tables/glonet.csv, the runs' arrays.npz and the
anchors of the claims file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.glonet import figures_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    figures_job(job.config, job.input.table, list(job.input.arrays), dict(job.output.items()),
                claims_yaml=job.input.claims)
