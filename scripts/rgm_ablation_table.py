"""RGM ablation table: one row per variant, with the differences to the full model."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgm import ablation_table_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    ablation_table_job(list(job.input), job.config, job.output[0])
