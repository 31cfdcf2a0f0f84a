"""Draw the RG-Flow figures from the table and the saved evaluation arrays only."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.plotting.rgflow import draw_all  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    draw_all(job.input.table, list(job.input.arrays), list(job.params.run_ids), dict(job.output.items()))
