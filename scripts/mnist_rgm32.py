"""32x32 MNIST for the RGM: resized, and resized + smoothed + ranked within each image."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821
from rgbench.data.cache import build_rgm32  # noqa: E402
from rgbench.job import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as job:  # noqa: F821
    c = job.config
    build_rgm32(job.input[0], job.output[0], size=c["size"], resize_method=c["resize"],
                smoothing_sigma=c["smoothing_sigma"], boundary=c["boundary"], ranks=c["ranks"])
