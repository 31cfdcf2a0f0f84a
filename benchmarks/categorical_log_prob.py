"""The generative models' pixel likelihood: ``rgbench.models.made.categorical_log_prob``
against ``torch.distributions.Categorical(logits).log_prob``, which it replaced (not a test).

Both give the same numbers bit for bit, forward and backward (tests/test_generative.py);
this script measures what the change saves, per model of the generative jobs' default size
(MADE with one hidden layer of 500; the VAE with 500 hidden units and 32 latents), in the two
places the likelihood is computed:

- ``step``: one training step as ``rgbench.training.fit`` takes it (zero_grad, forward,
  backward, Adam step; batch 100);
- ``iwae``: the VAE's importance-weighted bound of the evaluation job on 100 images with
  K = 100 draws (``generative.evaluation.iwae_samples``); for MADE, its exact NLL.

One torch thread, deterministic algorithms as ``seed_everything`` sets them. The two
implementations are timed interleaved (A/B, then B/A) on the same batch, so load from other
processes weighs on both alike; the medians' ratio new / old is printed in CPU (process)
seconds.

    python benchmarks/categorical_log_prob.py
    python benchmarks/categorical_log_prob.py --reps 30 --models vae
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.distributions import Categorical

import rgbench.models.made as made_module
import rgbench.models.vae as vae_module
from rgbench.data.mnist import parse_idx, read_local
from rgbench.data.preprocess import discretise
from rgbench.models.made import MADE, MADEConfig
from rgbench.models.vae import VAE, VAEConfig
from rgbench.runtime import deterministic_algorithms

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "tests" / "data" / "mnist-subset"
MODELS = ("made", "made_cond", "vae", "vae_cond")
NEW = made_module.categorical_log_prob  # the models' implementation, swapped out and back by ``timed``


def torch_categorical_log_prob(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """What the models computed before: torch's distribution, its support check off."""
    return Categorical(logits=logits, validate_args=False).log_prob(values)


def build(kind: str) -> torch.nn.Module:
    classes = 10 if kind.endswith("_cond") else 0
    if kind.startswith("made"):
        return MADE(MADEConfig(hidden=(500,), classes=classes))
    return VAE(VAEConfig(hidden=500, latents=32, classes=classes))


def workloads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Callable[[], None]]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = (model.negative_elbo(x, y) if isinstance(model, VAE) else model.nll(x, y)).mean()
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def evaluate() -> None:
        if isinstance(model, VAE):
            model.iwae_bound(x, y, samples=100, generator=generator.manual_seed(0))
        else:
            model.nll(x, y)

    return {"step": step, "iwae": evaluate}


def timed(fn: Callable[[], None], use_new: bool) -> float:
    implementation = NEW if use_new else torch_categorical_log_prob
    made_module.categorical_log_prob = vae_module.categorical_log_prob = implementation
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions of each order (A/B and B/A)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    deterministic_algorithms()
    images = parse_idx(read_local(SUBSET, "train-images-idx3-ubyte"), str(SUBSET))[:100]
    labels = torch.as_tensor(parse_idx(read_local(SUBSET, "train-labels-idx1-ubyte"), str(SUBSET))[:100]).long()
    x = torch.as_tensor(discretise(images)).long()
    print(f"{len(x)} images of {SUBSET.name}; CPU seconds per call, median of {2 * args.reps}")
    print(f"{'model':<10} {'workload':<6} {'old':>8} {'new':>8} {'new/old':>8}")
    for kind in args.models:
        torch.manual_seed(0)
        model = build(kind)
        y = labels if kind.endswith("_cond") else None
        for name, fn in workloads(model, x, y).items():
            fn()  # warm-up: first-call allocations
            old, new = [], []
            for _ in range(args.reps):
                old.append(timed(fn, False))
                new.append(timed(fn, True))
                new.append(timed(fn, True))
                old.append(timed(fn, False))
            o, n = statistics.median(old), statistics.median(new)
            print(f"{kind:<10} {name:<6} {o:8.4f} {n:8.4f} {n / o:8.2f}")
    made_module.categorical_log_prob = vae_module.categorical_log_prob = NEW


if __name__ == "__main__":
    main()
