"""Time one Gibbs sampler implementation at one chain count (flips per ns)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.sampler_bench import run_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    run_job(job.config, job.output[0], run_id=job.wildcards.run_id, device=job.device)
