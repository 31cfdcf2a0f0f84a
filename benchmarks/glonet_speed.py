"""Training throughput of the glonet experiment's own loop (not a test).

Prints samples/s, achieved GFLOP/s and the time of one full-MNIST epoch (55,000 train
images) for GloNet at depth 10 and 50, features 256, batch 256, on the current device.
The issue's target: a depth-10 epoch within 1.5x of about 3 s on the 2-core dev CPU.
On a shared machine compare the CPU-seconds column (with --threads 1 it equals the wall
time the epoch takes on an idle core).

    python benchmarks/glonet_speed.py                      # random MNIST-shaped data
    python benchmarks/glonet_speed.py --mnist28 results/data/mnist/mnist28.npz
    python benchmarks/glonet_speed.py --threads 1 --depths 10 50 200
"""

from __future__ import annotations

import argparse
import time

import torch

from rgbench.config import build, default_config
from rgbench.experiments.glonet import Data, GloNetRunConfig, load_data, train
from rgbench.models.glonet import train_flops_per_sample
from rgbench.runtime import describe_device, pick_device

FULL_EPOCH = 55_000


def run_config(**overrides) -> GloNetRunConfig:
    """A GloNet run as the workflow hands it over (config.yaml's glonet section), with overrides."""
    section = default_config()["glonet"]
    keys = ("features", "epochs", "batch_size", "lr", "optimizer", "momentum", "train_limit", "test_limit")
    return build(GloNetRunConfig, {**{key: section[key] for key in keys}, "grid": "main", "model": "GloNet",
                                   "seed": 0, **overrides})  # MNIST train split after the 5,000-image validation hold-out


def random_data(n_train: int, device: torch.device) -> Data:
    generator = torch.Generator().manual_seed(0)
    return Data(
        train_x=torch.rand(n_train, 784, generator=generator).to(device),
        train_y=torch.randint(0, 10, (n_train,), generator=generator).to(device),
        test_x=torch.rand(1000, 784, generator=generator).to(device),
        test_y=torch.randint(0, 10, (1000,), generator=generator).to(device),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=FULL_EPOCH, help="training samples per timed epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (the best one is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mnist28", default=None, help="time on real MNIST from this cache instead of random data")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.mnist28:
        data = load_data(args.mnist28, train_limit=args.samples, test_limit=1000, device=device)
    else:
        data = random_data(args.samples, device)
    n = len(data.train_x)
    print(f"device {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{n} samples/epoch, batch {args.batch_size}")
    for depth in args.depths:
        config = run_config(depth=depth, features=args.features, epochs=args.epochs, batch_size=args.batch_size)
        # One short untimed run first: kernel selection and allocator warm-up cost about
        # a CPU-second that would otherwise be charged to the first timed epoch.
        warm = Data(data.train_x[:512], data.train_y[:512], data.test_x[:256], data.test_y[:256])
        train(run_config(depth=depth, features=args.features, epochs=1, batch_size=args.batch_size), warm, device)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = train(config, data, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - started
        # CPU seconds of this process per epoch (eval of 1,000 images included, ~1%): on
        # a shared machine this is the number that does not depend on the neighbours.
        cpu_per_epoch = (time.process_time() - cpu_started) / args.epochs
        # fit times each epoch's training loop alone (evaluation excluded); take the best
        # epoch so that the first epoch's allocator warm-up does not count.
        best = min(h.seconds for h in result.fit.history)
        flops = train_flops_per_sample(config.net_config()) * n
        print(f"GloNet depth {depth:4d}: {n / best:10.0f} samples/s  {flops / best / 1e9:7.1f} GFLOP/s  "
              f"epoch {best:6.2f} s (full-MNIST epoch {best * FULL_EPOCH / n:6.2f} s)  "
              f"cpu {cpu_per_epoch * FULL_EPOCH / n:6.2f} s/epoch  [{args.epochs} epochs + eval in {total:.1f} s]")


if __name__ == "__main__":
    main()
