"""Join the claims registry (src/rgbench/claims/*.yaml) with the tables into tables/claims.csv."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.evaluation.claims import write_claims_table  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    enabled = json.loads(job.params.enabled)
    write_claims_table(job.input.claims, json.loads(job.params.tables), enabled, job.params.preset,
                       job.output[0], experiments=list(enabled))
