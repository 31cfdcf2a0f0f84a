# Definitions of the data stage (kept apart from its rules: snakemake --lint wants no
# defs beside rules). Self-contained: everything data.smk and the experiments use.
from snakemake.exceptions import WorkflowError

from rgbench.data.mnist import MNIST_FILES, MnistError, check_source, expected_checksums
from rgbench.io import file_sha256

MNIST_RAW_DIR = R("data/mnist/raw")
MNIST28 = R("data/mnist/mnist28.npz")
MNIST32_RGM = R("data/mnist/mnist32_rgm.npz")
MNIST4 = R("data/mnist/mnist4.npz")
MNIST_SUBSETS = R("data/mnist/subsets.npz")
MSDS_VARIANTS = ("msds1", "msds2")


def MSDS(variant):
    return R(f"data/msds/{variant}.npz")


def msds_variants_needed():
    """The MSDS variants some enabled experiment reads (RG-Flow's datasets)."""
    if not enabled("rgflow"):
        return []
    return [name for name in config["rgflow"]["datasets"] if name in MSDS_VARIANTS]


def data_targets():
    return [MNIST28, MNIST32_RGM, MNIST4, MNIST_SUBSETS] + [MSDS(v) for v in msds_variants_needed()]


def mnist_identity():
    """What decides the verified MNIST files: the SHA-256 they must have, never where they
    come from. `mnist_source` is a locator (download, a relative or an absolute path to the
    same files): changing it reruns nothing, a change of content does.

    Before the raw files exist, a directory source is verified here, when the DAG is built
    (about a second for full MNIST): a wrong path, a missing or a corrupt file stops the run
    at once, naming the file and the fix, before any job starts. A download is verified by
    mnist_fetch, which the scheduler runs first.
    """
    source = config["mnist_source"]
    directory = None if source == "download" else Path(source)
    raw_present = all(Path(MNIST_RAW_DIR, name).exists() for name in MNIST_FILES)
    try:
        if directory is not None and not raw_present:
            check_source(directory)
            expected = expected_checksums(config["mnist_checksums"], directory)
            check_source(directory, expected)
            return expected
        if (
            config["mnist_checksums"] == "manifest"
            and raw_present
            and not (directory is not None and (directory / "SHA256SUMS").exists())
        ):
            # the source moved away after a run: the files verified then decide
            return {name: file_sha256(Path(MNIST_RAW_DIR, name)) for name in MNIST_FILES}
        return expected_checksums(config["mnist_checksums"], directory)
    except MnistError as error:
        raise WorkflowError(f"MNIST: {error}") from None
