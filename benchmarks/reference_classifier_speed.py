"""CPU cost of the reference classifier (not a test).

Prints the CPU time of one training step (batch of digits plus outlier-exposure noise,
shift augmentation, AdamW step; the training job's own loss function), the implied CPU
time of one full epoch (55,000 images) and of the default preset's runs (seeds x epochs),
and the inference rate of ``predict_proba`` + ``features``. CPU time, not wall time: the
machine may be shared. The budget: all of the default preset's reference runs in about
250 CPU-seconds (training, FID statistics and start-up included).

    python benchmarks/reference_classifier_speed.py
    python benchmarks/reference_classifier_speed.py --threads 2 --steps 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rgbench.config import build, default_config
from rgbench.evaluation.reference import ReferenceClassifier, ReferenceCNN
from rgbench.experiments.reference_classifier import TRAIN_KEYS, ReferenceTrainConfig, batch_loss
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
    model = ReferenceCNN(cfg.model_config()).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.randn(cfg.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        batch_loss(model, x, y, cfg).backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.process_time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.process_time() - started) / args.steps
    epoch = per_step * FULL_EPOCH / cfg.batch_size
    runs = len(section["seeds"]) * cfg.epochs
    print(f"{describe_device(device)}, {args.threads} thread(s), batch {cfg.batch_size} + "
          f"{round(cfg.outlier_fraction * cfg.batch_size)} noise images")
    print(f"train step {1000 * per_step:.1f} CPU-ms -> {epoch:.1f} CPU-s per epoch, {runs * epoch:.0f} CPU-s for "
          f"{len(section['seeds'])} seeds x {cfg.epochs} epochs (training loops only)")

    classifier = ReferenceClassifier(model.eval(), device=device)
    images = np.random.default_rng(0).integers(0, 256, size=(5000, 28, 28), dtype=np.uint8)
    started = time.process_time()
    classifier.predict_proba(images)
    classifier.features(images)
    print(f"inference (probabilities + features): {2 * len(images) / (time.process_time() - started):.0f} "
          "images per CPU-second")


if __name__ == "__main__":
    main()
