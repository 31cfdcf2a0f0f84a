# Data stage: verified MNIST, cached preprocessing, and the MSDS sprite datasets.


include: "data_functions.smk"


rule data:
    input:
        lambda wildcards: data_targets(),


# Scheduled first (priority): a corrupt MNIST file is reported within seconds, before any
# long job starts. Its hand-off is the SHA-256 each file must have (file name -> digest):
# the data's identity, never where it comes from.
rule mnist_fetch:
    output:
        expand(f"{MNIST_RAW_DIR}/{{name}}", name=MNIST_FILES),
    log:
        LOG("mnist_fetch"),
    benchmark:
        BENCH("mnist_fetch")
    priority: 100
    conda:
        "../../envs/data.yaml"
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    params:
        config=mnist_identity(),
    script:
        "../../scripts/mnist_fetch.py"


rule mnist_cache:
    input:
        rules.mnist_fetch.output,
    output:
        MNIST28,
    log:
        LOG("mnist_cache"),
    benchmark:
        BENCH("mnist_cache")
    conda:
        "../../envs/data.yaml"
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    params:
        config=settings("data", "val_size", "split_seed"),
    script:
        "../../scripts/mnist_cache.py"


rule mnist_rgm32:
    input:
        MNIST28,
    output:
        MNIST32_RGM,
    log:
        LOG("mnist_rgm32"),
    benchmark:
        BENCH("mnist_rgm32")
    conda:
        "../../envs/torch.yaml"
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    params:
        config=settings(config["data"]["rgm"], "size", "resize", "smoothing_sigma", "boundary", "ranks"),
    script:
        "../../scripts/mnist_rgm32.py"


rule mnist_discretise:
    input:
        MNIST28,
    output:
        MNIST4,
    log:
        LOG("mnist_discretise"),
    benchmark:
        BENCH("mnist_discretise")
    conda:
        "../../envs/data.yaml"
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    params:
        config=settings("data", "discrete_edges"),
    script:
        "../../scripts/mnist_discretise.py"


rule mnist_subsets:
    input:
        MNIST28,
    output:
        MNIST_SUBSETS,
    log:
        LOG("mnist_subsets"),
    benchmark:
        BENCH("mnist_subsets")
    conda:
        "../../envs/data.yaml"
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    params:
        config=settings("data", "exemplars_per_class", "balanced_subset_size", "split_seed"),
    script:
        "../../scripts/mnist_subsets.py"


rule msds_generate:
    output:
        MSDS("{variant}"),
    log:
        LOG("msds_generate", "{variant}"),
    benchmark:
        BENCH("msds_generate", "{variant}")
    wildcard_constraints:
        variant=one_of(MSDS_VARIANTS),
    conda:
        "../../envs/data.yaml"
    threads: family_threads("data")
    resources:
        **family_resources("data"),
    params:
        config=settings("msds", "n_train", "n_test", "seed"),
    script:
        "../../scripts/msds_generate.py"
