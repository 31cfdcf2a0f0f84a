"""Exemplar indices (first N per digit) and a seeded balanced subset of the train split."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.data.cache import build_subsets  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    build_subsets(job.input[0], job.output[0], exemplars_per_class=job.config["exemplars_per_class"],
                  balanced_size=job.config["balanced_subset_size"], seed=job.config["split_seed"])
