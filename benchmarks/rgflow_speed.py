"""Training throughput of RG-Flow on the small configuration (images per second).

    python benchmarks/rgflow_speed.py [--steps 30] [--threads 1] [--data results/data/msds/msds1.npz]

Times full training steps (dequantise, logit, forward, backward, clip, AdamW) of the
0.4M-parameter model of the default preset (2 couplings per sublayer, hidden 128,
1 residual block of 1 hidden layer, batch 64) after 3 warm-up steps, on MSDS1 images
when the cache exists (random bytes otherwise; the speed does not depend on the data).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from rgbench.models.rgflow import RGFlow, RGFlowConfig, count_parameters, nll_nats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="results/data/msds/msds1.npz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.batch_size * (args.steps + 3)
    if Path(args.data).exists():
        images = np.load(args.data)["train_images"][:n]
    else:
        images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images = torch.as_tensor(images)
    model = RGFlow(RGFlowConfig(couplings=[2], hidden=128, res_blocks=1, mlp_layers=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-5)

    def step(i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nll_nats(model, images[i * args.batch_size:(i + 1) * args.batch_size]).mean() / 3072
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for i in range(3):
        step(i)
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(3, 3 + args.steps):
        step(i)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    images = args.steps * args.batch_size
    # Images per CPU-second is the steadier number on a machine shared with other jobs.
    print(f"rgbench rgflow: {count_parameters(model)} parameters, {images / seconds:.1f} images/s wall, "
          f"{images / cpu_seconds:.1f} images per CPU-second ({args.steps} steps of {args.batch_size}, "
          f"{seconds:.1f} s, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
