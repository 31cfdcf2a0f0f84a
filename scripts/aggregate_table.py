"""Join one experiment's metrics.json files into tables/<experiment>.csv."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.results import aggregate_table  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    aggregate_table(job.input, job.output[0], required_columns=job.config["required_columns"])
