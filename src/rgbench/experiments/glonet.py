"""GloNet vs MLP vs ResMLP depth study (seed 002): one training job per (model, depth, seed).

A job trains one :class:`~rgbench.models.glonet.DepthNet` on flattened MNIST with the
shared :func:`rgbench.training.fit` loop (checkpoint per epoch, exact resume, NaN ->
diverged), then measures test accuracy, layer usage and early-exit accuracy, and writes
``metrics.json`` plus an ``arrays.npz`` that the figure rules read.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rgbench.config import build
from rgbench.io import file_sha256, save_npz_atomic
from rgbench.models.glonet import DepthNet, DepthNetConfig, weight_one_norms
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import FitResult, TensorBatches, epoch_permutation, fit

log = get_logger("glonet")

EXPERIMENT = "glonet"
OPTIMIZERS = ("adam", "sgd")


@dataclass
class GloNetRunConfig:
    """Everything that decides a run's numbers (the checkpoint fingerprint hashes it)."""

    grid: str  # which grid of the config the run belongs to
    model: str
    depth: int
    features: int
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    seed: int
    train_limit: int  # 0: the whole train split
    test_limit: int  # 0: the whole test set

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.train_limit < 0 or self.test_limit < 0:
            raise ValueError("train_limit and test_limit must be >= 0 (0 means all)")
        self.net_config()  # validates model, depth and features early

    def net_config(self) -> DepthNetConfig:
        return DepthNetConfig(model=self.model, depth=self.depth, features=self.features)


@dataclass
class Data:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def to_inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]."""
    return torch.from_numpy(images.reshape(len(images), -1)).float().div_(255.0)


def load_data(mnist28: str | os.PathLike, train_limit: int = 0, test_limit: int = 0,
              device: torch.device | str = "cpu") -> Data:
    from rgbench.data.mnist import load_splits

    splits = load_splits(mnist28, limit_train=train_limit or None, limit_test=test_limit or None)
    return Data(
        train_x=to_inputs(splits.train_images).to(device),
        train_y=torch.from_numpy(splits.train_labels.astype(np.int64)).to(device),
        test_x=to_inputs(splits.test_images).to(device),
        test_y=torch.from_numpy(splits.test_labels.astype(np.int64)).to(device),
    )


def make_optimizer(model: torch.nn.Module, config: GloNetRunConfig) -> torch.optim.Optimizer:
    # The fused kernels do one pass over all parameters instead of one per tensor, which
    # matters for 100+ small tensors on a CPU (about 2x per epoch at depth 10).
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, fused=True)


@torch.inference_mode()
def accuracy(model: DepthNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        correct += int((logits.argmax(1) == y[start:start + batch_size]).sum())
    return correct / max(len(x), 1)


@torch.inference_mode()
def layer_statistics(model: DepthNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, np.ndarray]:
    """Per hidden layer: mean per-sample L1 norm of its output (raw and normalised to sum
    to 1 across layers), the weight 1-norm, and early-exit accuracy (head on the sum of the
    first k outputs; NaN for an MLP, whose head reads the last layer only)."""
    model.eval()
    layers = model.config.hidden_layers
    l1 = torch.zeros(layers, dtype=torch.float64)
    correct = torch.zeros(layers, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        for k, (h, stream) in enumerate(model.iter_layers(xb)):
            l1[k] += h.abs().sum(dim=1).double().sum().cpu()
            if model.head_reads_sum:
                correct[k] += (model.head(stream).argmax(1) == yb).sum().cpu()
    n = max(len(x), 1)
    l1 = (l1 / n).numpy()
    total = l1.sum()
    usage = l1 / total if np.isfinite(total) and total > 0 else np.full_like(l1, np.nan)
    exit_accuracy = (correct / n).numpy() if model.head_reads_sum else np.full(layers, np.nan)
    return {
        "layer_l1": l1.astype(np.float64),
        "layer_usage": usage.astype(np.float64),
        "weight_norm1": weight_one_norms(model).double().cpu().numpy(),
        "early_exit_accuracy": exit_accuracy.astype(np.float64),
    }


@dataclass
class RunResult:
    config: GloNetRunConfig
    model: DepthNet
    fit: FitResult
    test_accuracy: float
    curves: dict[str, list[float | None]] = field(default_factory=dict)


def train(config: GloNetRunConfig, data: Data, device: torch.device | str = "cpu",
          checkpoint_path: str | os.PathLike | None = None, description: str | None = None) -> RunResult:
    """Train one network; a non-finite loss ends the run with ``diverged`` set, not an error."""
    device = torch.device(device)
    seed_everything(config.seed)
    model = DepthNet(config.net_config()).to(device)
    optimizer = make_optimizer(model, config)
    n_train = len(data.train_x)
    running = {"correct": 0, "seen": 0}  # train accuracy of the epoch, from the batches' own logits

    def make_batches(epoch: int) -> TensorBatches:
        running.update(correct=0, seen=0)
        order = torch.from_numpy(epoch_permutation(n_train, config.seed, epoch)).to(device)
        return TensorBatches((data.train_x, data.train_y), config.batch_size, order=order)

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        with torch.no_grad():
            running["correct"] += int((logits.argmax(1) == y).sum())
            running["seen"] += len(y)
        return F.cross_entropy(logits, y)

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        test_accuracy = accuracy(model, data.test_x, data.test_y)
        return {
            "train_accuracy": running["correct"] / max(running["seen"], 1),
            "test_accuracy": test_accuracy,
            "eval_seconds": time.perf_counter() - started,
        }

    result = fit(
        model, optimizer, make_batches, loss_fn, config.epochs,
        checkpoint_path=checkpoint_path, on_epoch_end=on_epoch_end,
        description=description or f"{config.model}-{config.depth}",
        fingerprint=params_fingerprint({**asdict(config), "n_train": n_train, "n_test": len(data.test_x)}),
    )
    history = result.history
    curves = {
        "epoch": [h.epoch for h in history],
        "train_loss": [finite_or_none(h.train_loss) for h in history],
        "train_accuracy": [h.extra.get("train_accuracy") for h in history],
        "test_accuracy": [h.extra.get("test_accuracy") for h in history],
        "epoch_seconds": [h.seconds for h in history],
    }
    # "The accuracy it had": a diverged run's last evaluation (made right after the NaN).
    final = history[-1].extra["test_accuracy"] if history else accuracy(model, data.test_x, data.test_y)
    return RunResult(config, model, result, final, curves)


def _as_float_array(values: list[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def train_job(
    config: Mapping[str, Any] | GloNetRunConfig,
    mnist28: str | os.PathLike,
    metrics_path: str | os.PathLike,
    arrays_path: str | os.PathLike,
    run_id: str,
    device: str = "auto",
) -> dict[str, Any]:
    """One Snakemake job: train, measure, write ``metrics.json`` and ``arrays.npz``."""
    started = time.perf_counter()
    if not isinstance(config, GloNetRunConfig):
        config = build(GloNetRunConfig, config)
    torch_device = pick_device(device)
    data = load_data(mnist28, config.train_limit, config.test_limit, torch_device)
    checkpoint = Path(metrics_path).parent / "checkpoint.pt"
    result = train(config, data, torch_device, checkpoint_path=checkpoint, description=run_id)
    stats = layer_statistics(result.model, data.test_x, data.test_y)
    history = result.fit.history
    diverged_epoch = next((h.epoch for h in history if h.diverged), None)
    curves = result.curves
    save_npz_atomic(
        arrays_path,
        **{key: _as_float_array(values) for key, values in curves.items()},
        **stats,
    )
    n_params = sum(p.numel() for p in result.model.parameters())
    epochs_run = len(history)
    test_curve = [v for v in curves["test_accuracy"] if v is not None]
    metrics = {
        "test_accuracy": result.test_accuracy,
        "best_test_accuracy": max(test_curve) if test_curve else None,
        "final_train_loss": curves["train_loss"][-1] if history else None,
        "final_train_accuracy": curves["train_accuracy"][-1] if history else None,
        "train_seconds": result.fit.train_seconds,
        "seconds_per_epoch": result.fit.train_seconds / max(epochs_run, 1),
        "diverged": bool(result.fit.diverged),
        "diverged_epoch": diverged_epoch,
        "usage_layers_for_90pct": layers_for_fraction(stats["layer_usage"], 0.9),
        "best_early_exit_k": best_exit_k(stats["early_exit_accuracy"]),
    }
    params = {key: value for key, value in asdict(config).items() if key != "seed"}
    record = write_metrics(
        metrics_path,
        experiment=EXPERIMENT,
        run_id=run_id,
        params=params,
        seed=config.seed,
        metrics=metrics,
        wall_seconds=time.perf_counter() - started,
        device=describe_device(torch_device),
        provenance=provenance(n_train=len(data.train_x), n_val=0, n_test=len(data.test_x),
                              data_sha256=file_sha256(mnist28), n_params=n_params, epochs_run=epochs_run),
        extra={"curves": curves, "resumed_from_epoch": result.fit.resumed_from_epoch,
               **{key: _json_list(value) for key, value in stats.items()}},
    )
    # metrics.json is the finished result; a stale checkpoint would only make a forced
    # rerun skip training.
    checkpoint.unlink(missing_ok=True)
    log.info("%s: test accuracy %.4f, diverged=%s, %.1f s training", run_id, result.test_accuracy,
             result.fit.diverged, result.fit.train_seconds)
    return record


def _json_list(values: np.ndarray) -> list[float | None]:
    return [finite_or_none(float(v)) for v in values]


def layers_for_fraction(usage: np.ndarray, fraction: float) -> int | None:
    """How many leading layers carry ``fraction`` of the total usage (None if undefined)."""
    if not np.all(np.isfinite(usage)) or usage.sum() <= 0:
        return None
    return int(np.searchsorted(np.cumsum(usage), fraction * usage.sum()) + 1)


def best_exit_k(exit_accuracy: np.ndarray) -> int | None:
    """Smallest k whose early-exit accuracy is within 0.5 points of the best k."""
    if not np.any(np.isfinite(exit_accuracy)):
        return None
    best = np.nanmax(exit_accuracy)
    return int(np.flatnonzero(exit_accuracy >= best - 0.005)[0] + 1)
