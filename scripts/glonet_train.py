"""Train one GloNet / MLP / ResMLP run of the depth study (one grid point)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.glonet import TrainConfig, run_job  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    run_job(
        job.input[0],
        job.output.metrics,
        job.output.arrays,
        run_id=job.wildcards.run_id,
        config=TrainConfig(**json.loads(job.params.settings)),
        device=job.params.device,
        keep_checkpoint=job.params.keep_checkpoint,
    )
