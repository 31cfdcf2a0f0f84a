"""RGM speed: structure learning, active learning per image, batch inference per image.

Usage: python benchmarks/rgm_speed.py [results_dir] [n_stream] [n_infer]
Reads the MNIST32_RGM and subsets caches of a results directory (default results/).
Single-threaded BLAS is advised: OMP_NUM_THREADS=1 python benchmarks/rgm_speed.py
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rgbench.io import load_npz  # noqa: E402
from rgbench.models.rgm import RGM, RGMConfig, fit_quantiser  # noqa: E402


def main(results: str = "results", n_stream: int = 500, n_infer: int = 2000) -> None:
    data = load_npz(f"{results}/data/mnist/mnist32_rgm.npz")
    exemplars = load_npz(f"{results}/data/mnist/subsets.npz")["exemplar_index"].reshape(-1)
    images, labels = data["train_rgm"], data["train_labels"]
    config = RGMConfig()
    t = time.perf_counter()
    quantiser = fit_quantiser(images[:10000], config)
    print(f"SVD quantiser on 10,000 images: {time.perf_counter() - t:.2f} s")
    codes = quantiser.encode(images[:max(n_stream, 200)])
    model = RGM(config, quantiser)
    report = model.learn_structure(quantiser.encode(images[exemplars]), labels[exemplars])
    print(f"structure learning on {len(exemplars)} exemplars: {report.seconds:.3f} s "
          f"(states per level, max {[max(s) for s in report.n_states]})")
    t = time.perf_counter()
    out = model.learn_stream(codes[:n_stream], labels[:n_stream])
    per_image = (time.perf_counter() - t) / n_stream
    print(f"active learning: {1000 * per_image:.1f} ms / image -> {10000 * per_image:.0f} s for 10,000 "
          f"(accepted {out['accepted'].mean():.2f})")
    test = quantiser.encode(data["test_rgm"][:n_infer])
    t = time.perf_counter()
    model.classify(test)
    per_image = (time.perf_counter() - t) / n_infer
    print(f"inference: {1000 * per_image:.2f} ms / image -> {10000 * per_image:.0f} s for 10,000")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "results", *(int(a) for a in args[1:3]))
