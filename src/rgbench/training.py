"""Shared machinery for gradient-trained models: checkpoints and the epoch loop.

Every training job in the pipeline goes through :func:`fit`, so checkpointing, resume,
progress bars and NaN handling behave the same in all of them.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from rgbench.io import atomic_path
from rgbench.runtime import get_logger, progress

log = get_logger("training")


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, **state: Any) -> None:
    """Save a checkpoint atomically (RNG states included so a resume is exact)."""
    state.setdefault("rng", rng_state())
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any] | None:
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location=map_location, weights_only=False)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    seconds: float
    diverged: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    history: list[EpochResult]
    diverged: bool
    train_seconds: float
    resumed_from_epoch: int


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    make_batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[Any], torch.Tensor],
    epochs: int,
    checkpoint_path: str | os.PathLike | None = None,
    on_epoch_end: Callable[[int], dict[str, Any]] | None = None,
    grad_clip: float | None = None,
    scheduler: Any = None,
    description: str = "train",
    stop_on_nan: bool = True,
    on_step: Callable[[int], None] | None = None,
    fingerprint: str | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs, checkpointing after each one and resuming if possible.

    ``make_batches(epoch)`` returns the epoch's batches (seeded by the caller so that a
    resumed run sees the same order); ``loss_fn(batch)`` returns the scalar loss.
    ``on_epoch_end(epoch)`` evaluates and returns numbers stored in the history.
    A non-finite loss ends training with ``diverged=True`` instead of raising.
    ``fingerprint`` (e.g. a hash of the run's parameters) is stored in the checkpoint;
    a checkpoint with another fingerprint is ignored, so a changed config never
    resumes from a stale run.
    """
    history: list[EpochResult] = []
    start_epoch = 0
    train_seconds = 0.0
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint_path else None
    if checkpoint is not None and checkpoint.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to other parameters", checkpoint_path)
        checkpoint = None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        history = [EpochResult(**entry) for entry in checkpoint["history"]]
        start_epoch = checkpoint["epoch"]
        train_seconds = checkpoint.get("train_seconds", 0.0)
        set_rng_state(checkpoint["rng"])
        log.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)
        if history and history[-1].diverged:
            return FitResult(history, True, train_seconds, start_epoch)
    resumed_from = start_epoch
    diverged = False
    step = 0
    for epoch in range(start_epoch, epochs):
        model.train()
        started = time.perf_counter()
        total, count = 0.0, 0
        batches = make_batches(epoch)
        for batch in progress(batches, desc=f"{description} epoch {epoch + 1}/{epochs}", leave=False):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                diverged = True
                if stop_on_nan:
                    break
                continue
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += value
            count += 1
            step += 1
            if on_step is not None:
                on_step(step)
        seconds = time.perf_counter() - started
        train_seconds += seconds
        mean_loss = total / count if count else float("nan")
        extra = on_epoch_end(epoch) if on_epoch_end else {}
        history.append(EpochResult(epoch + 1, mean_loss, seconds, diverged, extra))
        log.info("%s epoch %d/%d loss %.4f (%.1f s) %s", description, epoch + 1, epochs, mean_loss,
                 seconds, {k: v for k, v in extra.items() if isinstance(v, (int, float))})
        if checkpoint_path:
            save_checkpoint(
                checkpoint_path,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict() if scheduler is not None else None,
                history=[vars(h) for h in history],
                epoch=epoch + 1,
                train_seconds=train_seconds,
                fingerprint=fingerprint,
            )
        if diverged and stop_on_nan:
            log.warning("%s: loss became non-finite in epoch %d; stopping", description, epoch + 1)
            break
    return FitResult(history, diverged, train_seconds, resumed_from)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffling order of one epoch, a pure function of (seed, epoch) so resume is exact."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class TensorBatches:
    """Mini-batches from in-memory tensors (much faster than a DataLoader for MNIST-sized data).

    Iterating yields tuples of tensors; ``len()`` lets tqdm show a proper bar.
    """

    def __init__(self, arrays: tuple[torch.Tensor, ...], batch_size: int, order: np.ndarray | None = None,
                 drop_last: bool = False) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.arrays = arrays
        self.batch_size = batch_size
        self.index = torch.as_tensor(order) if order is not None else None
        n = arrays[0].shape[0]
        self.stop = n - (n % batch_size) if drop_last else n

    def __len__(self) -> int:
        return math.ceil(self.stop / self.batch_size)

    def __iter__(self):
        for start in range(0, self.stop, self.batch_size):
            if self.index is None:
                yield tuple(a[start:start + self.batch_size] for a in self.arrays)
            else:
                sel = self.index[start:start + self.batch_size]
                yield tuple(a[sel] for a in self.arrays)
