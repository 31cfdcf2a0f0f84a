"""Time every Gibbs sampler row (flips per ns) and run THRML's energy check."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.sampler_bench import run_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    outputs = {Path(path).parent.name: path for path in job.output}
    run_job(job.config, outputs, device=job.device)
