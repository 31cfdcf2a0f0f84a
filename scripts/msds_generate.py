"""Generate one MSDS variant (train and test) with its per-sprite factors."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.data.msds import generate_dataset  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    generate_dataset(job.wildcards.variant, job.config["n_train"], job.config["n_test"], job.config["seed"], job.output[0])
