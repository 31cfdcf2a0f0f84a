"""Training throughput of the glonet experiment's own loop (not a test).

Prints samples/s, achieved GFLOP/s and the time of one full-MNIST epoch (55,000 train
images) for GloNet at depth 10 and 50 of a grid's recipe (default: the seed grid, features
256, batch 256), on the current device.
The issue's target: a depth-10 epoch within 1.5x of about 3 s on the 2-core dev CPU.
On a shared machine compare the CPU-seconds column (with --threads 1 it equals the wall
time the epoch takes on an idle core).

    python benchmarks/glonet_speed.py                      # random MNIST-shaped data
    python benchmarks/glonet_speed.py --mnist28 results/data/mnist/mnist28.npz
    python benchmarks/glonet_speed.py --threads 1 --depths 10 50 200
    python benchmarks/glonet_speed.py --threads 1 --grid notebook --depths 30 120
"""

from __future__ import annotations

import argparse
import time

import torch

from rgbench.config import default_config
from rgbench.experiments.glonet import Data, GloNetRunConfig, grid_run_config, load_data, train
from rgbench.models.glonet import train_flops_per_sample
from rgbench.runtime import describe_device, pick_device

FULL_EPOCH = 55_000


def run_config(grid: str, depth: int, **overrides) -> GloNetRunConfig:
    """A GloNet run of ``grid`` as the workflow hands it over (config.yaml), with overrides.
    The learning curve is checked once, after the last step, so that it costs nothing."""
    return grid_run_config(default_config()["glonet"], grid, "GloNet", depth, 0,
                           **{"val_every_steps": 10**9, "val_curve_images": 256, **overrides})


def random_data(n_train: int, device: torch.device) -> Data:
    generator = torch.Generator().manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.rand(n, 784, generator=generator).to(device),
                torch.randint(0, 10, (n,), generator=generator).to(device))

    return Data(*sample(n_train), *sample(256), *sample(1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="seed", help="the config grid whose recipe is timed")
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--samples", type=int, default=FULL_EPOCH, help="training samples per timed epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (the best one is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mnist28", default=None, help="time on real MNIST from this cache instead of random data")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    recipe = run_config(args.grid, args.depths[0])
    if args.mnist28:
        data = load_data(args.mnist28, args.samples, 1000, recipe.input_mean, recipe.input_std, device=device)
    else:
        data = random_data(args.samples, device)
    n = len(data.train_x)
    print(f"device {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{n} samples/epoch, grid {args.grid}: features {recipe.features}, batch {recipe.batch_size}")
    for depth in args.depths:
        config = run_config(args.grid, depth, epochs=args.epochs)
        # One short untimed run first: kernel selection and allocator warm-up cost about
        # a CPU-second that would otherwise be charged to the first timed epoch.
        warm = Data(data.train_x[:512], data.train_y[:512], data.val_x, data.val_y, data.test_x[:256],
                    data.test_y[:256])
        train(run_config(args.grid, depth, epochs=1), warm, device)
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
        print(f"GloNet depth {depth:4d} ({config.hidden_layers} hidden): {n / best:10.0f} samples/s  {flops / best / 1e9:7.1f} GFLOP/s  "
              f"epoch {best:6.2f} s (full-MNIST epoch {best * FULL_EPOCH / n:6.2f} s)  "
              f"cpu {cpu_per_epoch * FULL_EPOCH / n:6.2f} s/epoch  [{args.epochs} epochs + eval in {total:.1f} s]")


if __name__ == "__main__":
    main()
