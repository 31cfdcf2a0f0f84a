"""GloNet vs MLP vs ResMLP depth study (seed 002 and the official GloNet notebook).

A run is one (grid, model, depth, seed): it trains one
:class:`~rgbench.models.glonet.DepthNet` on flattened MNIST with the shared
:func:`rgbench.training.fit` loop (checkpoint per epoch, exact resume, NaN -> diverged),
following its grid's recipe (initialisation, activation, input scaling, batch size,
optimiser, epochs, training images). A Snakemake job trains the runs of one (grid, model,
seed) one depth after the other, so that the many tiny runs of the notebook grid share
one process start-up (about 3 CPU-seconds each), and writes each run's ``metrics.json``
and ``arrays.npz``.

Protocol: the training images are MNIST's training split minus the seeded validation
split (5,000 images in the full-data presets). Validation data decides every choice:
the learning curve (validation accuracy every ``val_every_steps`` steps), the early-exit
depth ``best_exit_k``, and offline the grid's learning rate. The test set is evaluated
once, after training, for the reported accuracy and the descriptive layer-usage measures.

A job whose hand-off has a ``probe`` block (the paper preset's probe) trains each run for
a few steps, evaluates a few batches and marks the runs ``probe`` in their provenance.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rgbench.config import build
from rgbench.io import file_sha256, save_npz_atomic
from rgbench.models.glonet import DepthNet, DepthNetConfig, replication_parameter_norms
from rgbench.probe import Probe, capped, measured, probe_record_path
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import FitResult, TensorBatches, epoch_permutation, fit

log = get_logger("glonet")

EXPERIMENT = "glonet"
OPTIMIZERS = ("adam", "sgd")
DEPTH_COUNTS = ("linear", "hidden")


@dataclass
class GloNetRunConfig:
    """Everything that decides a run's numbers (the checkpoint fingerprint hashes it)."""

    grid: str  # the config grid the run belongs to
    model: str
    depth: int
    # "linear": depth counts every Linear layer including the head (the replication's
    # num_layers); "hidden": hidden layers only (the official notebook's num_layers)
    depth_counts: str
    seed: int
    features: int
    init: str
    negative_slope: float  # 0: ReLU
    input_mean: float  # inputs are (pixel / 255 - input_mean) / input_std
    input_std: float
    mlp_output: str
    residual_start: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    epochs: int
    train_limit: int  # 0: the whole train split
    test_limit: int  # 0: the whole test set
    val_every_steps: int
    val_curve_images: int  # 0: the whole validation split
    usage_fraction: float
    convergence_levels: list[float]
    exit_tolerance: float

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.depth_counts not in DEPTH_COUNTS:
            raise ValueError(f"depth_counts must be one of {DEPTH_COUNTS}, got {self.depth_counts!r}")
        for name in ("epochs", "batch_size", "val_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.input_std > 0:
            raise ValueError(f"input_std must be > 0, got {self.input_std}")
        if min(self.train_limit, self.test_limit, self.val_curve_images) < 0:
            raise ValueError("train_limit, test_limit and val_curve_images must be >= 0 (0 means all)")
        if not 0 < self.usage_fraction <= 1:
            raise ValueError(f"usage_fraction must be in (0, 1], got {self.usage_fraction}")
        if not all(0 < level <= 1 for level in self.convergence_levels):
            raise ValueError(f"convergence_levels must lie in (0, 1], got {self.convergence_levels}")
        self.net_config()  # validates model, depth, features, init ... early

    @property
    def hidden_layers(self) -> int:
        return self.depth - 1 if self.depth_counts == "linear" else self.depth

    def net_config(self) -> DepthNetConfig:
        if self.hidden_layers < 1:
            raise ValueError(f"depth {self.depth} counted as {self.depth_counts!r} layers leaves no hidden layer")
        return DepthNetConfig(model=self.model, hidden_layers=self.hidden_layers, features=self.features,
                              init=self.init, negative_slope=self.negative_slope, mlp_output=self.mlp_output,
                              residual_start=self.residual_start)


# How the workflow's hand-off of a run is put together (workflow/rules/glonet_functions.smk
# restates these lists; tests/test_glonet.py pins the two together): the run's place in
# its grid, how every run is measured (top-level keys of the glonet config), and the
# grid's recipe (every other field: the grid keys that decide a run's numbers).
RUN_KEYS = ("grid", "model", "depth", "seed")
MEASURE_KEYS = ("usage_fraction", "convergence_levels", "exit_tolerance")
RECIPE_KEYS = tuple(f.name for f in fields(GloNetRunConfig) if f.name not in RUN_KEYS + MEASURE_KEYS)


@dataclass
class Data:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def to_inputs(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 784): (pixel / 255 - mean) / std."""
    x = torch.from_numpy(images.reshape(len(images), -1)).float().div_(255.0)
    return x.sub_(mean).div_(std)


def load_data(mnist28: str | os.PathLike, train_limit: int, test_limit: int, input_mean: float, input_std: float,
              device: torch.device | str = "cpu") -> Data:
    from rgbench.data.mnist import load_splits

    splits = load_splits(mnist28, limit_train=train_limit or None, limit_test=test_limit or None)

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.astype(np.int64)).to(device)

    return Data(
        train_x=to_inputs(splits.train_images, input_mean, input_std).to(device),
        train_y=labels(splits.train_labels),
        val_x=to_inputs(splits.val_images, input_mean, input_std).to(device),
        val_y=labels(splits.val_labels),
        test_x=to_inputs(splits.test_images, input_mean, input_std).to(device),
        test_y=labels(splits.test_labels),
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
def layer_statistics(model: DepthNet, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, Any]:
    """One pass over (x, y) in batches of ``batch_size``, in order. Per hidden layer:

    - ``layer_l1``: mean over samples of the L1 norm of the layer's activated output (what
      GloNet's sum receives from it); ``layer_usage``: the same normalised to sum to 1;
    - ``replication_l1``: the public replication's measure of intermediate outputs: per
      batch, the induced 1-norm of the layer's pre-activation (batch x units) matrix, i.e.
      the largest over units of the sum over the batch of |z|; summed over batches and
      divided by n_batches * batch_size (``replication_head_l1``: the same for the head's
      logits);
    - ``exit_accuracy``: early exit, the accuracy of the head on the stream after the first
      k layers, taken in this same pass (NaN for an MLP, whose head reads the last layer
      only);

    and ``accuracy`` of the whole net.
    """
    model.eval()
    layers = model.config.hidden_layers
    l1 = torch.zeros(layers, dtype=torch.float64)
    replication = torch.zeros(layers, dtype=torch.float64)
    replication_head = 0.0
    exit_correct = torch.zeros(layers, dtype=torch.float64)
    correct = 0
    n_batches = 0
    uses_head = not (model.config.model == "MLP" and model.config.mlp_output == "hidden")
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        n_batches += 1
        stream = xb
        for k, (z, h, stream) in enumerate(model.iter_layers(xb)):
            l1[k] += h.abs().sum().double().cpu()
            replication[k] += z.abs().sum(dim=0).max().double().cpu()
            if model.head_reads_sum:
                exit_correct[k] += (model.head(stream).argmax(1) == yb).sum().cpu()
        logits = model.head(stream) if uses_head else stream
        if uses_head:
            replication_head += float(logits.abs().sum(dim=0).max())
        correct += int((logits.argmax(1) == yb).sum())
    n = max(len(x), 1)
    l1 = (l1 / n).numpy()
    replication = (replication / max(n_batches * batch_size, 1)).numpy()
    return {
        "accuracy": correct / n,
        "layer_l1": l1,
        "layer_usage": normalised(l1),
        "replication_l1": replication,
        "replication_head_l1": replication_head / max(n_batches * batch_size, 1) if uses_head else math.nan,
        "exit_accuracy": (exit_correct / n).numpy() if model.head_reads_sum else np.full(layers, np.nan),
    }


def normalised(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if np.isfinite(total) and total > 0 else np.full_like(values, np.nan)


def layers_for_fraction(usage: np.ndarray, fraction: float) -> int | None:
    """How many leading layers carry ``fraction`` of the total usage (None if undefined)."""
    if not np.all(np.isfinite(usage)) or usage.sum() <= 0:
        return None
    return int(np.searchsorted(np.cumsum(usage), fraction * usage.sum() * (1 - 1e-12)) + 1)


def best_exit_k(exit_accuracy: np.ndarray, tolerance: float) -> int | None:
    """Smallest k whose early-exit accuracy is within ``tolerance`` of the best k (apply
    it to validation accuracies only: it is a choice)."""
    if not np.any(np.isfinite(exit_accuracy)):
        return None
    best = np.nanmax(exit_accuracy)
    return int(np.flatnonzero(exit_accuracy >= best - tolerance)[0] + 1)


def steps_to_level(steps: Sequence[int], accuracies: Sequence[float], level: float, steps_run: int) -> int:
    """The first checked step whose validation accuracy is >= ``level``; ``steps_run + 1``
    (censored: "not within this run") when none is."""
    for step, value in zip(steps, accuracies):
        if value is not None and value >= level:
            return int(step)
    return int(steps_run) + 1


def level_name(level: float) -> str:
    """0.9 -> "90", 0.975 -> "97_5": the suffix of a convergence-level column."""
    return f"{100 * level:.6g}".replace(".", "_")


def usage_name(fraction: float) -> str:
    return level_name(fraction)


@dataclass
class RunResult:
    config: GloNetRunConfig
    model: DepthNet
    fit: FitResult
    steps_run: int
    curves: dict[str, list[Any]] = field(default_factory=dict)


def train(config: GloNetRunConfig, data: Data, device: torch.device | str = "cpu",
          checkpoint_path: str | os.PathLike | None = None, description: str | None = None,
          probe: Probe | None = None) -> RunResult:
    """Train one network; a non-finite loss ends the run with ``diverged`` set, not an error.

    Validation accuracy on the first ``val_curve_images`` validation images is recorded
    every ``val_every_steps`` optimiser steps and after the last step (the learning curve
    that "converges faster" is measured on)."""
    device = torch.device(device)
    seed_everything(config.seed)
    model = DepthNet(config.net_config()).to(device)
    optimizer = make_optimizer(model, config)
    n_train = len(data.train_x)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    curve_n = config.val_curve_images or len(data.val_x)
    val_x, val_y = data.val_x[:curve_n], data.val_y[:curve_n]
    # The global step and the epoch's running train accuracy (from the batches' own logits).
    state: dict[str, Any] = {"step": 0, "correct": 0, "seen": 0, "curve": []}

    def make_batches(epoch: int) -> TensorBatches:
        state.update(step=epoch * steps_per_epoch, correct=0, seen=0, curve=[])
        order = torch.from_numpy(epoch_permutation(n_train, config.seed, epoch)).to(device)
        return TensorBatches((data.train_x, data.train_y), config.batch_size, order=order)

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        with torch.no_grad():
            state["correct"] += int((logits.argmax(1) == y).sum())
            state["seen"] += len(y)
        return F.cross_entropy(logits, y)

    def on_step(_: int) -> None:
        state["step"] += 1
        if state["step"] % config.val_every_steps == 0 or state["step"] == total_steps:
            state["curve"].append([state["step"], accuracy(model, val_x, val_y)])
            model.train()

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        return {"train_accuracy": state["correct"] / max(state["seen"], 1), "val_curve": list(state["curve"]),
                "steps": state["step"]}

    result = fit(
        model, optimizer, make_batches, loss_fn, config.epochs,
        checkpoint_path=checkpoint_path, on_epoch_end=on_epoch_end, on_step=on_step,
        description=description or f"{config.model}-{config.depth}",
        fingerprint=params_fingerprint({**asdict(config), "n_train": n_train, "n_val": len(data.val_x),
                                        "n_test": len(data.test_x), **({"probe": True} if probe is not None else {})}),
        probe=probe,
    )
    history = result.history
    val_points = [point for h in history for point in h.extra.get("val_curve", [])]
    curves = {
        "epoch": [h.epoch for h in history],
        "train_loss": [finite_or_none(h.train_loss) for h in history],
        "train_accuracy": [h.extra.get("train_accuracy") for h in history],
        "epoch_seconds": [h.seconds for h in history],
        "val_step": [int(step) for step, _ in val_points],
        "val_accuracy": [float(value) for _, value in val_points],
    }
    steps_run = int(history[-1].extra.get("steps", 0)) if history else 0
    if probe is not None:  # a probe's steps stop short of its epochs
        steps_run = result.steps_run
    return RunResult(config, model, result, steps_run, curves)


def evaluate(result: RunResult, data: Data, probe: Probe | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """After training: the full validation split decides the early-exit depth; the test
    set, evaluated once, gives the reported numbers. Returns (metrics, arrays). A probe
    keeps ``eval_batches`` batches of each."""
    config, model = result.config, result.model
    with measured(probe, "evaluate_val"):
        n_val = capped(probe, len(data.val_x), config.batch_size)
        val = layer_statistics(model, data.val_x[:n_val], data.val_y[:n_val], config.batch_size)
    with measured(probe, "evaluate_test"):
        n_test = capped(probe, len(data.test_x), config.batch_size)
        test = layer_statistics(model, data.test_x[:n_test], data.test_y[:n_test], config.batch_size)
    exit_k = best_exit_k(val["exit_accuracy"], config.exit_tolerance)
    fraction = usage_name(config.usage_fraction)
    curves = result.curves
    history = result.fit.history
    metrics: dict[str, Any] = {
        "test_accuracy": test["accuracy"],
        "val_accuracy": val["accuracy"],
        "final_train_loss": curves["train_loss"][-1] if history else None,
        "final_train_accuracy": curves["train_accuracy"][-1] if history else None,
        "train_seconds": result.fit.train_seconds,
        "seconds_per_epoch": result.fit.train_seconds / max(len(history), 1),
        "diverged": bool(result.fit.diverged),
        "diverged_epoch": next((h.epoch for h in history if h.diverged), None),
        f"usage_layers_{fraction}": layers_for_fraction(test["layer_usage"], config.usage_fraction),
        f"replication_l1_layers_{fraction}": layers_for_fraction(test["replication_l1"], config.usage_fraction),
        "best_exit_k": exit_k,
        "exit_val_accuracy": None if exit_k is None else float(val["exit_accuracy"][exit_k - 1]),
        "exit_test_accuracy": None if exit_k is None else float(test["exit_accuracy"][exit_k - 1]),
    }
    for level in config.convergence_levels:
        steps = steps_to_level(curves["val_step"], curves["val_accuracy"], level, result.steps_run)
        metrics[f"steps_to_val_{level_name(level)}"] = steps
        metrics[f"reached_val_{level_name(level)}"] = steps <= result.steps_run
    arrays = {
        "layer_l1": test["layer_l1"],
        "layer_usage": test["layer_usage"],
        "replication_l1": test["replication_l1"],
        "replication_param_l1": replication_parameter_norms(model).double().cpu().numpy(),
        "val_exit_accuracy": val["exit_accuracy"],
        "test_exit_accuracy": test["exit_accuracy"],
    }
    return {key: finite_or_none(value) if isinstance(value, float) else value for key, value in metrics.items()}, \
        arrays


def _as_float_array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _json_list(values: np.ndarray) -> list[float | None]:
    return [finite_or_none(float(v)) for v in values]


def run_one(config: GloNetRunConfig, data: Data, run_id: str, metrics_path: str | os.PathLike,
            arrays_path: str | os.PathLike, data_sha256: str, device: torch.device,
            probe: Probe | None = None) -> dict[str, Any]:
    """Train and evaluate one run; write its ``metrics.json`` and ``arrays.npz`` (and, in
    a probe, its probe record). Its checkpoint (next to metrics.json) is left for the
    caller to remove."""
    started = time.perf_counter()
    checkpoint = Path(metrics_path).parent / "checkpoint.pt"
    result = train(config, data, device, checkpoint_path=checkpoint, description=run_id, probe=probe)
    metrics, arrays = evaluate(result, data, probe)
    n_val, n_test = (len(data.val_x), len(data.test_x)) if probe is None else \
        (capped(probe, len(data.val_x), config.batch_size), capped(probe, len(data.test_x), config.batch_size))
    curves = result.curves
    save_npz_atomic(arrays_path, **{key: _as_float_array(values) for key, values in curves.items()}, **arrays)
    net = config.net_config()
    record = write_metrics(
        metrics_path,
        experiment=EXPERIMENT,
        run_id=run_id,
        params={key: value for key, value in asdict(config).items() if key != "seed"},
        seed=config.seed,
        metrics=metrics,
        wall_seconds=time.perf_counter() - started,
        device=describe_device(device),
        provenance=provenance(n_train=len(data.train_x), n_val=n_val, n_test=n_test,
                              data_sha256=data_sha256, n_params=sum(p.numel() for p in result.model.parameters()),
                              epochs_run=len(result.fit.history), steps_run=result.steps_run,
                              hidden_layers=net.hidden_layers, linear_layers=net.linear_layers,
                              val_curve_n=min(config.val_curve_images or len(data.val_x), len(data.val_x)),
                              probe=probe is not None),
        extra={"curves": curves, "resumed_from_epoch": result.fit.resumed_from_epoch,
               **{key: _json_list(value) for key, value in arrays.items()}},
    )
    log.info("%s: test accuracy %.4f, validation %.4f, diverged=%s, %.1f s training", run_id,
             metrics["test_accuracy"], metrics["val_accuracy"], result.fit.diverged, result.fit.train_seconds)
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device=describe_device(device),
                    n_params=record["provenance"]["n_params"], run_id=run_id)
    return record


def train_job(config: Mapping[str, Any], mnist28: str | os.PathLike, metrics_paths: Sequence[str | os.PathLike],
              arrays_paths: Sequence[str | os.PathLike], device: str = "auto") -> list[dict[str, Any]]:
    """One Snakemake job: the runs of ``config["runs"]`` ({run_id: hand-off}), each written
    to the output pair whose directory is named after its run id.

    Checkpoints stay until every run of the job is written: a job killed half-way resumes
    its finished runs from their last checkpoint (evaluation only) when rerun. A ``probe``
    block probes every run (each with its own record)."""
    runs = {run_id: build(GloNetRunConfig, settings) for run_id, settings in config["runs"].items()}
    metrics_by_run = {Path(path).parent.name: path for path in metrics_paths}
    arrays_by_run = {Path(path).parent.name: path for path in arrays_paths}
    if set(metrics_by_run) != set(runs) or set(arrays_by_run) != set(runs):
        raise ValueError(f"the job's outputs {sorted(metrics_by_run)} do not match its runs {sorted(runs)}")
    torch_device = pick_device(device)
    data_sha256 = file_sha256(mnist28)
    cache: dict[tuple, Data] = {}
    records = []
    # Shallow runs first: a broken setting shows up in seconds, not after the deepest run.
    for run_id, run in sorted(runs.items(), key=lambda item: (item[1].depth, item[0])):
        key = (run.train_limit, run.test_limit, run.input_mean, run.input_std)
        if key not in cache:
            cache[key] = load_data(mnist28, *key, device=torch_device)
        records.append(run_one(run, cache[key], run_id, metrics_by_run[run_id], arrays_by_run[run_id],
                               data_sha256, torch_device, probe=Probe.from_config(config)))
    # metrics.json is the finished result; a stale checkpoint would only make a forced
    # rerun skip training.
    for path in metrics_by_run.values():
        (Path(path).parent / "checkpoint.pt").unlink(missing_ok=True)
    return records


def grid_run_config(config: Mapping[str, Any], grid: str, model: str, depth: int, seed: int,
                    **overrides: Any) -> GloNetRunConfig:
    """A run's config as the workflow builds it from the glonet config (for the lr sweep,
    benchmarks and tests): the grid's recipe, the measures, then ``overrides``."""
    recipe = {key: config["grids"][grid][key] for key in RECIPE_KEYS}
    measures = {key: config[key] for key in MEASURE_KEYS}
    return build(GloNetRunConfig, {**recipe, **measures, "grid": grid, "model": model, "depth": depth,
                                   "seed": seed, **overrides})


def lr_sweep(config: Mapping[str, Any], grid: str, mnist28: str | os.PathLike, lrs: Sequence[float],
             models: Sequence[str], depths: Sequence[int], seeds: Sequence[int], device: str = "auto",
             **overrides: Any) -> list[dict[str, Any]]:
    """Train ``grid``'s recipe at each learning rate and report validation accuracy only
    (the test set is never evaluated): how a grid's lr is chosen. One row per run."""
    torch_device = pick_device(device)
    rows = []
    data = None
    for lr in lrs:
        for model in models:
            for depth in depths:
                for seed in seeds:
                    run = grid_run_config(config, grid, model, depth, seed, lr=float(lr), **overrides)
                    if data is None:
                        data = load_data(mnist28, run.train_limit, run.test_limit, run.input_mean, run.input_std,
                                         torch_device)
                    cpu = time.process_time()
                    result = train(run, data, torch_device, description=f"lr {lr} {model}-{depth} s{seed}")
                    rows.append({"grid": grid, "lr": float(lr), "model": model, "depth": depth, "seed": seed,
                                 "val_accuracy": accuracy(result.model, data.val_x, data.val_y),
                                 "diverged": result.fit.diverged, "steps": result.steps_run,
                                 "cpu_seconds": time.process_time() - cpu,
                                 "val_curve": result.curves["val_accuracy"]})
                    log.info("%s", {k: v for k, v in rows[-1].items() if k != "val_curve"})
    return rows
