# rgbench: one DAG from MNIST / MSDS data to trained models, figures and a claims report.
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The DAG uses the package's own definitions (e.g. the MNIST checksums), from this checkout.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))


configfile: "config.yaml"


validate(config, schema="workflow/schemas/config.schema.yaml", set_default=False)


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        lambda wildcards: all_targets(),


include: "workflow/rules/data.smk"
include: "workflow/rules/reference_classifier.smk"
include: "workflow/rules/glonet.smk"
include: "workflow/rules/potts_ebm.smk"
include: "workflow/rules/sampler_bench.smk"
include: "workflow/rules/generative.smk"
include: "workflow/rules/rgm.smk"
include: "workflow/rules/spatial_rgm.smk"
include: "workflow/rules/rgflow.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/report.smk"
