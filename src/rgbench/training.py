"""Shared machinery for gradient-trained models: checkpoints and the epoch loop.

Every training job in the pipeline goes through :func:`fit`, so checkpointing, resume,
progress bars, NaN handling and gradient accumulation behave the same in all of them.
Given a :class:`rgbench.probe.Probe` (the paper preset's probe), :func:`fit` stops after
the probe's steps, saves a checkpoint half-way and resumes from it, and measures its steps
(:class:`rgbench.probe.StepMeasure`); the probe machinery itself lives in
:mod:`rgbench.probe`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from rgbench.io import atomic_path
from rgbench.probe import MB, UNCOUNTED, Probe, StepMeasure, measured
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


def save_model_file(path: str | os.PathLike, kind: str, save_format: int, module: torch.nn.Module, config: Any,
                    record: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A trained model as a plain dict (kind, format, config dataclass as a dict, weights, its
    training record and ``extra``: a job's own record), written atomically; returns the dict."""
    payload = {"format": save_format, "kind": kind, "config": dataclasses.asdict(config),
               "state_dict": module.state_dict(), "record": record, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return payload


def load_model_file(path: str | os.PathLike, kind: str, save_format: int) -> dict[str, Any]:
    """The dict :func:`save_model_file` wrote; a file of another kind or format is an error."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("kind") != kind or payload.get("format") != save_format:
        raise ValueError(f"{path}: not a {kind.upper()} file of format {save_format}")
    return payload


def load_trained_module(path: str | os.PathLike, kind: str, save_format: int,
                        build: Callable[[dict[str, Any]], torch.nn.Module]) -> tuple[Any, dict[str, Any]]:
    """A model :func:`save_model_file` wrote: ``build`` makes it from the saved config dict,
    then its weights and training record (``.record``) are loaded and it is put in eval
    mode. Returns the model and the whole dict."""
    payload = load_model_file(path, kind, save_format)
    model = build(payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.record = payload["record"]
    model.eval()
    return model, payload


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    seconds: float
    diverged: bool
    extra: dict[str, Any] = field(default_factory=dict)
    # CPU seconds of this process over the epoch, its end-of-epoch evaluation included
    # (what producing the model cost; wall ``seconds`` counts the steps only)
    cpu_seconds: float = 0.0


@dataclass
class FitResult:
    history: list[EpochResult]
    diverged: bool
    train_seconds: float
    resumed_from_epoch: int
    steps_run: int = 0  # optimiser steps taken by this call (a resumed run counts from its resume)

    @property
    def train_cpu_seconds(self) -> float:
        """CPU seconds of every epoch in the history, those of a resumed run's earlier
        sittings included."""
        return float(sum(entry.cpu_seconds for entry in self.history))


# --------------------------------------------------------------------------- steps

def batch_size_of(batch: Any) -> int:
    """Samples in a batch: a tensor, or a tuple / list of tensors sharing dimension 0."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, (tuple, list)) and batch and all(isinstance(t, torch.Tensor) for t in batch):
        return int(batch[0].shape[0])
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} into micro-batches")


def micro_batches(batch: Any, size: int) -> list[Any]:
    """``batch`` cut along dimension 0 into pieces of at most ``size`` samples."""
    if isinstance(batch, torch.Tensor):
        return list(torch.split(batch, size))
    return [type(batch)(parts) for parts in zip(*(torch.split(t, size) for t in batch))]


def accumulate_gradients(batch: Any, loss_fn: Callable[[Any], torch.Tensor], micro_batch_size: int | None,
                         first_piece: contextlib.AbstractContextManager | None = None) -> float:
    """Forward and backward of one optimiser step's batch; returns the batch's loss.

    With ``micro_batch_size`` smaller than the batch, the batch goes through in pieces and
    each piece's loss, weighted by its share of the batch, is back-propagated at once, so
    only one piece's activations are alive at a time. For a loss that is a mean over
    samples the summed gradient is the whole batch's, up to float rounding; a model whose
    output depends on the other samples of its batch (BatchNorm) is not such a model.
    A non-finite loss stops the step and is returned with no (further) backward pass.
    ``first_piece`` wraps the first piece's forward and backward (a probe counts its work).
    """
    n = batch_size_of(batch) if micro_batch_size else 0
    pieces = micro_batches(batch, micro_batch_size) if micro_batch_size and n > micro_batch_size else [batch]
    total = 0.0
    for i, piece in enumerate(pieces):
        with first_piece if i == 0 and first_piece is not None else contextlib.nullcontext():
            loss = loss_fn(piece)
            if len(pieces) > 1:
                loss = loss * (batch_size_of(piece) / n)
            value = float(loss.detach())
            if math.isfinite(value):
                loss.backward()
        if not math.isfinite(value):
            return value
        total += value
    return total


def _restore(checkpoint: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any) -> tuple[list[EpochResult], int, float]:
    """Load a checkpoint's states (the resume path); returns (history, epoch, train seconds)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"])
    history = [EpochResult(**entry) for entry in checkpoint["history"]]
    return history, int(checkpoint["epoch"]), float(checkpoint.get("train_seconds", 0.0))


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
    micro_batch_size: int | None = None,
    probe: Probe | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs, checkpointing after each one and resuming if possible.

    ``make_batches(epoch)`` returns the epoch's batches (seeded by the caller so that a
    resumed run sees the same order); ``loss_fn(batch)`` returns the scalar loss, a mean
    over the batch's samples when ``micro_batch_size`` is set (see
    :func:`accumulate_gradients`: the batch then goes through in pieces of that many
    samples, with the same optimiser step).
    ``on_epoch_end(epoch)`` evaluates and returns numbers stored in the history.
    A non-finite loss ends training with ``diverged=True`` instead of raising.
    ``fingerprint`` (e.g. a hash of the run's parameters) is stored in the checkpoint;
    a checkpoint with another fingerprint is ignored, so a changed config never
    resumes from a stale run.
    With a ``probe``, training stops after ``probe.steps`` optimiser steps spread over
    (at most) two epochs, the checkpoint written after the first is loaded back as a
    resumed run would, and the steps are measured (:class:`Probe`).
    """
    if micro_batch_size is not None and micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1 or None, got {micro_batch_size}")
    history: list[EpochResult] = []
    start_epoch = 0
    train_seconds = 0.0
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint_path else None
    if checkpoint is not None and checkpoint.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to other parameters", checkpoint_path)
        checkpoint = None
    if checkpoint is not None:
        history, start_epoch, train_seconds = _restore(checkpoint, model, optimizer, scheduler)
        log.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)
        if history and history[-1].diverged:
            return FitResult(history, True, train_seconds, start_epoch)
    resumed_from = start_epoch
    plan = probe.epoch_plan(start_epoch, epochs) if probe is not None else {}
    measure = None
    if probe is not None:
        param_mb = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / MB
        measure = StepMeasure(probe, micro_batch_size, epochs, param_mb)
        micro_batch_size = probe.micro_batch(micro_batch_size)
    diverged = False
    step = 0
    for epoch in range(start_epoch, epochs):
        if probe is not None and epoch not in plan:
            break
        model.train()
        started, cpu_started = time.perf_counter(), time.process_time()
        total, count = 0.0, 0
        batches = make_batches(epoch)
        if measure is not None:
            measure.epoch_batches(batches)
        for batch in progress(batches, desc=f"{description} epoch {epoch + 1}/{epochs}", leave=False):
            if probe is not None and count >= plan[epoch]:
                break
            counting = measure.step(batch_size_of(batch), _on_cuda(batch)) if measure is not None else None
            with counting or contextlib.nullcontext(UNCOUNTED) as counters:
                optimizer.zero_grad(set_to_none=True)
                value = accumulate_gradients(batch, loss_fn, micro_batch_size, first_piece=counters.first_piece)
                finite = math.isfinite(value)
                if finite:
                    with counters.rest():
                        if grad_clip:
                            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                        optimizer.step()
                        if scheduler is not None:
                            scheduler.step()
            if not finite:
                diverged = True
                if stop_on_nan:
                    break
                continue
            total += value
            count += 1
            step += 1
            if on_step is not None:
                on_step(step)
        seconds = time.perf_counter() - started
        train_seconds += seconds
        mean_loss = total / count if count else float("nan")
        with measured(probe, "epoch_end"):
            extra = on_epoch_end(epoch) if on_epoch_end else {}
        history.append(EpochResult(epoch + 1, mean_loss, seconds, diverged, extra,
                                   cpu_seconds=time.process_time() - cpu_started))
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
            if measure is not None and epoch + 1 in plan:
                # The probe's resume: the states go back in from the file a rerun would read.
                history, _, train_seconds = _restore(load_checkpoint(checkpoint_path), model, optimizer, scheduler)
                measure.resumed = True
        if diverged and stop_on_nan:
            log.warning("%s: loss became non-finite in epoch %d; stopping", description, epoch + 1)
            break
    if measure is not None:
        probe.fits.append(measure.summary(description, len(history) - resumed_from, step, diverged))
    return FitResult(history, diverged, train_seconds, resumed_from, step)


def _on_cuda(batch: Any) -> bool:
    """Whether a batch (a tensor, or a tuple / list holding tensors) lives on a GPU."""
    tensors = [batch] if isinstance(batch, torch.Tensor) else \
        [t for t in batch if isinstance(t, torch.Tensor)] if isinstance(batch, (tuple, list)) else []
    return torch.cuda.is_available() and any(t.is_cuda for t in tensors)


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
