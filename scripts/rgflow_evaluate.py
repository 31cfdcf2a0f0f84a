"""Evaluate one trained RG-Flow run: test BPD, samples, receptive fields, mixing arrays."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.experiments.rgflow import evaluate_run  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    evaluate_run(job.input.model, job.input.data, json.loads(job.params.section), job.params.run_id,
                 metrics_path=job.output.metrics, arrays_path=job.output.arrays, device_pref=job.params.device)
