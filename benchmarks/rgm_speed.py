"""RGM speed in CPU seconds (not a test): active learning and test inference.

Issue 16's targets, on one core: active learning over 10,000 images <= 60 s and inference
(classification plus both ELBOs) over 10,000 test images <= 10 s. CPU seconds
(time.process_time) are measured, so a busy machine does not flatter or spoil them; run
with single-threaded BLAS. Reads the caches of a finished run's results directory.

    OMP_NUM_THREADS=1 python benchmarks/rgm_speed.py                   # default config
    OMP_NUM_THREADS=1 python benchmarks/rgm_speed.py --stream 2000 --infer 2000   # extrapolated
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))   # this checkout's package first
from rgbench.config import build, default_config  # noqa: E402
from rgbench.experiments.rgm import MODEL_KEYS, stream_exemplars  # noqa: E402
from rgbench.io import load_npz  # noqa: E402
from rgbench.models.rgm import RGM  # noqa: E402
from rgbench.models.rgm_config import RGMConfig  # noqa: E402
from rgbench.models.rgm_quantiser import fit_quantiser  # noqa: E402

TARGET_LEARN, TARGET_INFER, FULL = 60.0, 10.0, 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--stream", type=int, default=FULL, help="stream images to learn from (timed)")
    parser.add_argument("--infer", type=int, default=FULL, help="official test images to classify (timed)")
    args = parser.parse_args()
    section = default_config()["rgm"]
    config = build(RGMConfig, {key: section[key] for key in MODEL_KEYS})
    data = load_npz(f"{args.results}/data/mnist/mnist32_rgm.npz")
    images, labels = data["train_rgm"], data["train_labels"]
    stream = np.arange(section["data"]["stream_size"])

    t = time.process_time()
    quantiser = fit_quantiser(images[stream], config.quantiser)
    print(f"SVD quantiser on {len(stream):,} images: {time.process_time() - t:.2f} CPU s")
    exemplars = stream_exemplars(labels, stream, section["data"]["exemplars_per_class"])
    model = RGM(config, quantiser)
    report = model.learn_structure(quantiser.encode(images[exemplars]), labels[exemplars])
    print(f"structure learning on {len(exemplars)} exemplars: {report.seconds:.3f} s")

    codes = quantiser.encode(images[stream[:args.stream]])
    t = time.process_time()
    model.learn_stream(codes, labels[stream[:args.stream]], record_every=args.stream)
    learn = (time.process_time() - t) * FULL / args.stream
    print(f"active learning: {1000 * learn / FULL:.2f} ms / image -> {learn:.1f} CPU s for 10,000 "
          f"(target <= {TARGET_LEARN:.0f} s: {'met' if learn <= TARGET_LEARN else 'NOT met'})")

    test = quantiser.encode(data["test_rgm"][:args.infer])
    batch = config.inference.batch
    t = time.process_time()
    for start in range(0, len(test), batch):
        model.infer(test[start:start + batch])
    forward = (time.process_time() - t) * FULL / len(test)
    print(f"classification (the configured scheme, with its ELBO): {forward:.1f} CPU s for 10,000 "
          f"(target <= {TARGET_INFER:.0f} s: {'met' if forward <= TARGET_INFER else 'NOT met'})")
    t = time.process_time()
    model.classify(test)
    infer = (time.process_time() - t) * FULL / len(test)
    print(f"classification + exact log evidence (what the evaluation jobs time): {infer:.1f} CPU s for 10,000")


if __name__ == "__main__":
    main()
