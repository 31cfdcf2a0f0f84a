"""RG-Flow training throughput, ours against the official implementation (not a test).

    python benchmarks/rgflow_speed.py --official PATH/TO/RG-Flow/code [--rounds 5 --steps 4]
    python benchmarks/rgflow_speed.py                 # ours only

The issue's target: our training step >= 1.5x the official implementation's images per
second at "its 948k-parameter configuration". The official code (hongyehu/RG-Flow, a
checkout you provide; nothing of it is part of this project) has no configuration of
that size by default; 948,224 parameters is what its ``build_mera`` gives for
``--nlayers 2 --nhidden 128 --nresblocks 1`` with its default ``--nmlp 2``: the default
preset's width and depth (hidden 128, 2 couplings per sublayer, 1 residual block) with
the official two hidden layers per residual block. Both models are built at that
configuration and their parameter counts are checked to agree.

One training step as each code trains (official: ``main.py``'s step, with its
``logit_transform``, gradient-checkpointed ``log_prob``, global-norm clipping 1 and
AdamW; ours: what ``rgflow_train`` runs) on the same batches of 64 MSDS1 images (random
bytes when the cache is missing; speed does not depend on the data), 1 thread. The two
alternate in rounds so that both see the same machine load; images per CPU-second are
reported (steadier than wall time on a shared machine) with the ratio per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rgbench.models.rgflow import RGFlow, RGFlowConfig, count_parameters, dequantise, to_logit

CONFIG = dict(couplings=[2], hidden=128, res_blocks=1, mlp_layers=2, prior="laplace")
OFFICIAL_ARGS = ["--nlayers", "2", "--nhidden", "128", "--nresblocks", "1", "--nmlp", "2", "--prior", "laplace",
                 "--batch_size", "64", "--lr", "1e-3", "--weight_decay", "5e-5", "--clip_grad", "1",
                 "-o", ""]
BATCH = 64


def our_step_fn(images: torch.Tensor) -> tuple[Callable[[int], None], int]:
    model = RGFlow(RGFlowConfig(**CONFIG))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-5)

    def step(i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        y, ldj = to_logit(dequantise(images[i * BATCH:(i + 1) * BATCH]))
        loss = -(model.log_prob(y) + ldj).mean() / model.config.dims
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step, count_parameters(model)


def official_step_fn(code_dir: Path, images: torch.Tensor) -> tuple[Callable[[int], None], int]:
    """The official model and training step, imported from a checkout outside the project.

    Its ``main`` imports modules that only its plotting and HDF5 loading use; minimal
    stand-ins for them are registered so that the model code imports unchanged.
    """
    for name, attributes in (("h5py", {}), ("utils_support", {"my_tight_layout": None, "plot_samples_np": None})):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__dict__.update(attributes)
            sys.modules[name] = module
    sys.path.insert(0, str(code_dir))
    saved_argv = sys.argv
    sys.argv = ["main.py", *OFFICIAL_ARGS]
    try:
        import main as official  # noqa: PLC0415 (the official entry point)
        import utils as official_utils  # noqa: PLC0415
    finally:
        sys.argv = saved_argv
    flow = official.build_mera()
    flow.train(True)
    params = [p for p in flow.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=5e-5)
    dims = 3 * 32 * 32

    def step(i: int) -> None:
        optimizer.zero_grad()
        # The official loader yields ToTensor() images in [0, 1]; logit_transform dequantises.
        x = images[i * BATCH:(i + 1) * BATCH].permute(0, 3, 1, 2).contiguous().float() / 255
        x, ldj = official_utils.logit_transform(x)
        loss = (-(flow.log_prob(x) + ldj) / dims).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return step, sum(p.numel() for p in params)


def timed(step: Callable[[int], None], first: int, steps: int) -> float:
    """Images per CPU-second over ``steps`` steps."""
    started = time.process_time()
    for i in range(first, first + steps):
        step(i)
    return steps * BATCH / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="the official checkout's code/ directory")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per round and implementation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="results/data/msds/msds1.npz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = BATCH * (args.rounds * args.steps + 2)
    if Path(args.data).exists():
        images = np.load(args.data)["train_images"][:n]
    else:
        images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images = torch.as_tensor(images)
    steps = {"ours": our_step_fn(images)}
    if args.official:
        steps["official"] = official_step_fn(args.official.resolve(), images)
        if steps["official"][1] != steps["ours"][1]:
            raise SystemExit(f"parameter counts differ: ours {steps['ours'][1]}, official {steps['official'][1]}")
    for name, (step, _) in steps.items():  # warm-up
        step(0), step(1)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        first = 2 + r * args.steps
        for name, (step, _) in steps.items():
            rates[name].append(timed(step, first, args.steps))
    ours = statistics.median(rates["ours"])
    line = (f"rgbench rgflow: {steps['ours'][1]:,} parameters, batch {BATCH}, {args.threads} thread(s), "
            f"{args.rounds} rounds of {args.steps} steps: ours {ours:.1f} images per CPU-second")
    if "official" in rates:
        official = statistics.median(rates["official"])
        ratios = [a / b for a, b in zip(rates["ours"], rates["official"])]
        verdict = "meets" if statistics.median(ratios) >= 1.5 else "MISSES"
        line += (f", official {official:.1f}; ratio per round {', '.join(f'{x:.2f}' for x in ratios)} "
                 f"(median {statistics.median(ratios):.2f}x: {verdict} >= 1.5x)")
    print(line)


if __name__ == "__main__":
    main()
