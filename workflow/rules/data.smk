# Data stage: verified MNIST, cached preprocessing, and the MSDS sprite datasets.

include: "data_functions.smk"

MNIST_RAW_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
MNIST28 = R("data/mnist/mnist28.npz")
MNIST32_RGM = R("data/mnist/mnist32_rgm.npz")
MNIST4 = R("data/mnist/mnist4.npz")
MNIST_SUBSETS = R("data/mnist/subsets.npz")


rule data:
    input:
        lambda wildcards: data_targets(),


rule mnist_fetch:
    output:
        expand(R("data/mnist/raw/{name}"), name=MNIST_RAW_FILES),
    params:
        source=config["mnist_source"],
        checksums=config["mnist_checksums"],
    log:
        LOG("mnist_fetch"),
    benchmark:
        BENCH("mnist_fetch")
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/mnist_fetch.py"


rule mnist_cache:
    input:
        rules.mnist_fetch.output,
    output:
        MNIST28,
    params:
        val_size=config["data"]["val_size"],
        seed=config["data"]["split_seed"],
    log:
        LOG("mnist_cache"),
    benchmark:
        BENCH("mnist_cache")
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/mnist_cache.py"


rule mnist_rgm32:
    input:
        MNIST28,
    output:
        MNIST32_RGM,
    params:
        size=config["data"]["rgm"]["size"],
        smoothing_sigma=config["data"]["rgm"]["smoothing_sigma"],
        equalise=config["data"]["rgm"]["equalise"],
    log:
        LOG("mnist_rgm32"),
    benchmark:
        BENCH("mnist_rgm32")
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/mnist_rgm32.py"


rule mnist_discretise:
    input:
        MNIST28,
    output:
        MNIST4,
    params:
        edges=config["data"]["discrete_edges"],
    log:
        LOG("mnist_discretise"),
    benchmark:
        BENCH("mnist_discretise")
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/mnist_discretise.py"


rule mnist_subsets:
    input:
        MNIST28,
    output:
        MNIST_SUBSETS,
    params:
        exemplars_per_class=config["data"]["exemplars_per_class"],
        balanced_size=config["data"]["balanced_subset_size"],
        seed=config["data"]["split_seed"],
    log:
        LOG("mnist_subsets"),
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/mnist_subsets.py"


rule msds_generate:
    output:
        R("data/msds/{variant}.npz"),
    wildcard_constraints:
        variant="msds1|msds2",
    params:
        n_train=config["msds"]["n_train"],
        n_test=config["msds"]["n_test"],
        seed=config["msds"]["seed"],
    log:
        LOG("msds_generate", "{variant}"),
    benchmark:
        BENCH("msds_generate", "{variant}")
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/msds_generate.py"
