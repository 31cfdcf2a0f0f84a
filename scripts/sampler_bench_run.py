"""Time one Gibbs sampler at one chain count on the 28x28 Potts grid (flips per ns)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.sampler_bench import bench_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    bench_job(job.output[0], job.wildcards.implementation, int(job.wildcards.chains),
              json.loads(job.params.section), device=job.params.device)
