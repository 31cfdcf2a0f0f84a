"""Judge the published claims and the project's targets on the tables."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.evaluation.claims import write_claims_table  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    settings = job.config
    for kind in ("claims", "targets"):
        write_claims_table(job.input[kind], settings["tables"], settings["enabled"], job.output[kind],
                           preset=settings["preset"], experiments=list(settings["enabled"]),
                           probe=settings["probe"])
