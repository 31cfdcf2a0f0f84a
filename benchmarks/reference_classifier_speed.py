"""Throughput of the reference classifier (not a test).

Prints the training step time (batch of digits plus outlier-exposure noise, shift
augmentation, AdamW step), the implied time of one full-MNIST epoch (55,000 images),
and the inference rate of ``predict_proba`` + ``features`` on the current device.
The issue's target: the whole default-preset training (5 epochs) in under 3 minutes on
2 CPU cores, i.e. about 30 s per epoch.

    python benchmarks/reference_classifier_speed.py
    python benchmarks/reference_classifier_speed.py --threads 2 --steps 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from rgbench.evaluation.reference import (ReferenceClassifier, ReferenceCNN, normalise, outlier_images,
                                          random_shift)
from rgbench.config import build, default_config
from rgbench.experiments.reference_classifier import TRAIN_KEYS, ReferenceTrainConfig
from rgbench.runtime import describe_device, pick_device

FULL_EPOCH = 55_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    section = default_config()["reference_classifier"]
    cfg = build(ReferenceTrainConfig, {**{key: section[key] for key in TRAIN_KEYS}, "seed": 0})
    model = ReferenceCNN(cfg.model_config()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.randn(cfg.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)
    n_outliers = round(cfg.outlier_fraction * cfg.batch_size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(torch.cat([random_shift(x, cfg.max_shift), normalise(outlier_images(n_outliers, device))]))
        loss = F.cross_entropy(logits[:cfg.batch_size], y) - F.log_softmax(logits[cfg.batch_size:], 1).mean()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - started) / args.steps
    epoch = per_step * FULL_EPOCH / cfg.batch_size
    print(f"{describe_device(device)}, {args.threads} thread(s), batch {cfg.batch_size} + {n_outliers} noise images")
    print(f"train step {1000 * per_step:.1f} ms -> {epoch:.1f} s per epoch, {cfg.epochs * epoch:.0f} s for "
          f"{cfg.epochs} epochs")

    classifier = ReferenceClassifier(model, device=device)
    images = np.random.default_rng(0).integers(0, 256, size=(5000, 28, 28), dtype=np.uint8)
    started = time.perf_counter()
    classifier.predict_proba(images)
    classifier.features(images)
    print(f"inference (probabilities + features): {2 * len(images) / (time.perf_counter() - started):.0f} images/s")


if __name__ == "__main__":
    main()
