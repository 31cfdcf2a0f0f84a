"""Cache 28x28 MNIST (original order) and the seeded validation indices."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.data.mnist import build_cache  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    build_cache(Path(job.input[0]).parent, job.output[0], val_size=job.config["val_size"], seed=job.config["split_seed"])
