"""tables/costs.csv and tables/costs_by_experiment.csv from every benchmark file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.report.costs import write_costs  # noqa: E402
from rgbench.runtime import get_logger  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    jobs, summary = write_costs(job.params.results_dir, job.output.jobs, job.output.summary,
                                rule_stages=job.params.rule_stages, experiments=job.params.experiments,
                                rule_runs=job.params.rule_runs)
    get_logger("report").info("costs of %d jobs:\n%s", len(jobs), summary.to_string(index=False))
