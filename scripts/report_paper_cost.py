"""tables/paper_cost.csv: the paper preset's cost per job, scaled from the probe's records."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.job import snakemake_job  # noqa: E402
from rgbench.runtime import get_logger  # noqa: E402
from rgbench.summary.paper_cost import paper_cost_sentence, paper_totals, write_paper_cost  # noqa: E402

with snakemake_job(snakemake, torch_threads=False) as job:  # noqa: F821
    settings = job.config
    table = write_paper_cost(settings["results_dir"], job.output[0], resources=settings["resources"],
                             gpu=settings["gpu"], margins=settings["margins"], rule_stages=settings["rule_stages"],
                             report_rules=settings["report_rules"])
    get_logger("report").info("%s", paper_cost_sentence(paper_totals(table)))
