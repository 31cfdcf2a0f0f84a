"""The generative models' input layer: gather-and-sum (LevelLinear) against the dense
one-hot product it replaced, per training step (not a test).

Builds the default-size models of the generative jobs (MADE with one hidden layer of 500,
the categorical VAE with 500 hidden units and 32 latents; each unconditional and
class-conditional), and times one training step as ``rgbench.training.fit`` takes it
(zero_grad, forward, backward, Adam step; batch 100; one torch thread; deterministic
algorithms as ``seed_everything`` sets them) of two copies of each model:

- new: the model as it is (its first layer, a ``LevelLinear``, sums the weight columns of
  each image's pixels above level 0; the weight is stored column-major);
- old: the same model with that layer computing ``F.linear(one_hot(x)[..., 1:], W * M, b)``
  on a row-major weight, as the models did before.

The two are timed interleaved (A/B, then B/A, on the same batch) so that load from other
processes weighs on both alike; the medians' ratio new / old is printed per model, in wall
and in CPU (process) seconds. On a shared machine read the CPU column.

    python benchmarks/generative_input_layer.py                  # ../shared/data/mnist, else the test subset
    python benchmarks/generative_input_layer.py --reps 50 --models made vae
    python benchmarks/generative_input_layer.py --mnist tests/data/mnist-subset
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.data.mnist import MnistError, parse_idx, read_local
from rgbench.data.preprocess import CLASSES, discretise
from rgbench.models.made import MADE, LevelLinear, MADEConfig
from rgbench.models.vae import VAE, VAEConfig
from rgbench.runtime import deterministic_algorithms

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIRS = (ROOT.parent / "shared" / "data" / "mnist", ROOT / "tests" / "data" / "mnist-subset")
MODELS = ("made", "made_cond", "vae", "vae_cond")


def load_images(directory: Path | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """4-level MNIST training images (N, 28, 28) int64 and labels, from the first directory
    that holds them; synthetic images with ~80% zeros when none does."""
    for candidate in ([directory] if directory is not None else MNIST_DIRS):
        try:
            images = parse_idx(read_local(candidate, "train-images-idx3-ubyte"), str(candidate))
            labels = parse_idx(read_local(candidate, "train-labels-idx1-ubyte"), str(candidate))
        except (MnistError, OSError):
            if directory is not None:
                raise
            continue
        return torch.as_tensor(discretise(images)).long(), torch.as_tensor(labels).long(), str(candidate)
    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(1, 4, (2000, 28, 28), generator=generator)
    levels = levels * (torch.rand(2000, 28, 28, generator=generator) < 0.2)
    return levels, torch.randint(0, CLASSES, (2000,), generator=generator), "synthetic (~80% zeros)"


def dense_forward(self: LevelLinear, x: torch.Tensor) -> torch.Tensor:
    """The input layer as it was: the dense product of the one-hot indicators."""
    inputs = F.one_hot(x, self.levels)[..., 1:].flatten(1).to(self.weight.dtype)
    return F.linear(inputs, self.masked_weight(), self.bias)


def as_old(model: MADE | VAE) -> MADE | VAE:
    """A copy of ``model`` whose input layer computes the dense product on a row-major
    weight (and mask), the models' input layer before LevelLinear."""
    old = copy.deepcopy(model)
    for layer in old.modules():
        if isinstance(layer, LevelLinear):
            layer.weight = nn.Parameter(layer.weight.detach().contiguous())
            if layer.mask is not None:
                layer.mask = layer.mask.contiguous()
            layer.forward = types.MethodType(dense_forward, layer)
    return old


def build(name: str) -> MADE | VAE:
    classes = CLASSES if name.endswith("_cond") else 0
    if name.startswith("made"):
        return MADE(MADEConfig(hidden=(500,), classes=classes))
    return VAE(VAEConfig(hidden=500, latents=32, classes=classes))


class Trainer:
    """One model, its Adam, and one training step as the generative train job takes it."""

    def __init__(self, model: MADE | VAE, lr: float) -> None:
        self.model = model.train()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
        labels = y if self.model.conditional else None
        self.optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # the VAE's draw: the same noise for both sides
        per_image = self.model.nll(x, labels) if isinstance(self.model, MADE) else self.model.negative_elbo(x, labels)
        loss = per_image.mean()
        loss.backward()
        self.optimizer.step()
        return loss.item()


def timed(trainer: Trainer, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[float, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    loss = trainer.step(x, y, seed)
    return time.perf_counter() - wall, time.process_time() - cpu, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--reps", type=int, default=30, help="timed steps of each side per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each side first")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=None, help="directory of the MNIST IDX files")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    deterministic_algorithms()
    images, labels, source = load_images(args.mnist)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    zero = float((images == 0).float().mean())
    print(f"data: {source}, {len(images)} images, {zero:.1%} of pixels at level 0; batch {args.batch}, "
          f"{args.threads} thread(s), {args.reps} interleaved steps per side")
    print(f"{'model':<10} {'old ms':>8} {'new ms':>8} {'wall new/old':>13} {'CPU new/old':>12} {'first loss diff':>16}")
    for name in args.models:
        torch.manual_seed(0)
        model = build(name)
        sides = {"new": Trainer(model, args.lr), "old": Trainer(as_old(model), args.lr)}
        wall: dict[str, list[float]] = {"new": [], "old": []}
        cpu: dict[str, list[float]] = {"new": [], "old": []}
        first_loss: dict[str, float] = {}
        for rep in range(args.warmup + args.reps):
            start = (rep * args.batch) % (len(images) - args.batch + 1)
            batch = order[start:start + args.batch]
            x, y = images[batch], labels[batch]
            for side in (("new", "old") if rep % 2 == 0 else ("old", "new")):
                w, c, loss = timed(sides[side], x, y, seed=rep)
                first_loss.setdefault(side, loss)
                if rep >= args.warmup:
                    wall[side].append(w)
                    cpu[side].append(c)
        med = {k: statistics.median(v) for k, v in wall.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{name:<10} {1e3 * med['old']:8.2f} {1e3 * med['new']:8.2f} {med['new'] / med['old']:13.3f} "
              f"{med_cpu['new'] / med_cpu['old']:12.3f} {abs(first_loss['new'] - first_loss['old']):16.2e}")


if __name__ == "__main__":
    main()
