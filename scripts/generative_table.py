"""Every generator, EBMs and traditional models, in tables/generative.csv; the answer per quality level beside it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.evaluation.comparison import table_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    table_job(job.config, list(job.input.runs), list(job.input.ebm), job.output.table, job.output.answer,
              job.output.sentences)
