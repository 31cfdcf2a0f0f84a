"""tables/costs.csv and tables/costs_by_experiment.csv from every benchmark file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.summary.costs import write_costs  # noqa: E402
from rgbench.runtime import get_logger  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    settings = job.config
    jobs, summary = write_costs(settings["results_dir"], job.output.jobs, job.output.summary,
                                rule_stages=settings["rule_stages"], experiments=settings["experiments"],
                                rule_runs=settings["rule_runs"])
    get_logger("report").info("costs of %d jobs:\n%s", len(jobs), summary.to_string(index=False))
