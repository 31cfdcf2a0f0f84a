"""Shared machinery for gradient-trained models: checkpoints, the epoch loop and probes.

Every training job in the pipeline goes through :func:`fit`, so checkpointing, resume,
progress bars, NaN handling, gradient accumulation and probing behave the same in all of
them.

A :class:`Probe` (the config's ``probe`` block, handed to a job when it is enabled) runs a
job at its real model and batch size for a few optimiser steps: :func:`fit` stops after
``steps`` steps, saves a checkpoint half-way and resumes from it, and measures seconds,
FLOPs and dispatched operations per step and peak memory; evaluation loops cut their work
to ``eval_batches`` batches with :meth:`Probe.cap`, which records by how much, so that
``rgbench.summary.paper_cost`` can scale the measurements up to the real run.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from rgbench.io import atomic_path, write_json_atomic
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
    steps_run: int = 0  # optimiser steps taken by this call (a resumed run counts from its resume)


# --------------------------------------------------------------------------- probes

MB = 1024**2


class _WorkCounter(TorchDispatchMode):
    """Counts the aten operations dispatched (on a GPU each is at least one kernel launch,
    which is what bounds the step time of small models) and their FLOPs, by torch's own
    FLOP formulas (torch.utils.flop_counter: matmuls, convolutions, attention). Not
    FlopCounterMode itself: its module tracking keeps every micro-batch's activations
    alive until the block ends (measured: 1.2 GB a sample instead of 0.19 for RG-Flow)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


@contextlib.contextmanager
def count_work() -> Iterator[dict[str, float]]:
    """FLOPs and dispatched operations of the block (:class:`_WorkCounter`); the dict is
    filled in when the block ends."""
    counted: dict[str, float] = {}
    with _WorkCounter() as counter:
        yield counted
    counted.update(flops=float(counter.flops), ops=float(counter.ops))


def peak_host_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def host_mb() -> float | None:
    try:
        import psutil
    except ImportError:  # psutil comes with Snakemake; without it the number is left out
        return None
    return psutil.Process().memory_info().rss / MB


@dataclass
class Probe:
    """The config's ``probe`` block as a job receives it (only while the probe is active).

    ``steps``: optimiser steps in all (a checkpoint is saved and resumed from after the
    first half); ``eval_batches``: batches each evaluation loop keeps; ``rule``,
    ``family`` and ``benchmark``: the job that measured, its resource family, and its
    Snakemake benchmark file (which gives wall time and peak memory); ``represents``: how
    many jobs of the real run this one stands for (seeds, datasets or priors of the same
    size that the probe does not repeat); ``max_micro_batch``: the most samples per
    forward/backward pass of a job that accumulates gradients (the probe's machine may hold
    less than the GPU a micro-batch size was chosen for; None: as configured).
    """

    steps: int
    eval_batches: int
    max_micro_batch: int | None
    rule: str
    family: str
    benchmark: str
    represents: int
    fits: list[dict[str, Any]] = field(default_factory=list, init=False)
    blocks: dict[str, dict[str, float]] = field(default_factory=dict, init=False)
    _open: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.eval_batches < 1 or self.represents < 1:
            raise ValueError(f"probe steps, eval_batches and represents must be >= 1, got {self}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Probe | None":
        """The probe of a job's hand-off, None when the hand-off has no ``probe`` block."""
        spec = config.get("probe")
        if not spec:
            return None
        cap = spec.get("max_micro_batch")
        return cls(steps=int(spec["steps"]), eval_batches=int(spec["eval_batches"]),
                   max_micro_batch=None if cap is None else int(cap), rule=str(spec["rule"]),
                   family=str(spec["family"]), benchmark=str(spec["benchmark"]), represents=int(spec["represents"]))

    def micro_batch(self, configured: int | None) -> int | None:
        """The micro-batch a probe runs: the configured one, at most ``max_micro_batch``."""
        if configured is None or self.max_micro_batch is None:
            return configured
        return min(configured, self.max_micro_batch)

    def cap(self, n: int, batch_size: int) -> int:
        """How many of ``n`` items an evaluation loop in batches of ``batch_size`` keeps:
        ``eval_batches`` batches. The ratio is recorded on the open :meth:`measure` block
        (the largest of its loops), so a block's time scales to the real run as an upper
        bound."""
        kept = min(int(n), self.eval_batches * max(int(batch_size), 1))
        if self._open and kept > 0:
            block = self.blocks[self._open[-1]]
            block["scale"] = max(block["scale"], n / kept)
        return kept

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Time and count the work of a block (an evaluation, a per-epoch validation); a
        block entered again accumulates (``calls`` counts the entries)."""
        block = self.blocks.setdefault(name, {"seconds": 0.0, "flops": 0.0, "ops": 0.0, "calls": 0, "scale": 1.0})
        self._open.append(name)
        started = time.perf_counter()
        try:
            with count_work() as work:
                yield
        finally:
            self._open.pop()
        block["seconds"] += time.perf_counter() - started
        block["flops"] += work["flops"]
        block["ops"] += work["ops"]
        block["calls"] += 1

    def record(self, **job: Any) -> dict[str, Any]:
        settings = {key: value for key, value in asdict(self).items() if key not in ("fits", "blocks", "_open")}
        return {**settings, **job, "fits": self.fits, "blocks": self.blocks}

    def write(self, path: str | os.PathLike, **job: Any) -> dict[str, Any]:
        """Write the probe record (what ``rgbench.summary.paper_cost`` reads) to ``path``."""
        record = self.record(**job)
        write_json_atomic(path, record)
        return record


def probe_record_path(run_dir: str | os.PathLike, probe: Probe) -> Path:
    """Where a job's probe record goes: its run directory, named after its rule."""
    return Path(run_dir) / f"probe_{probe.rule}.json"


def split_probe(config: Mapping[str, Any]) -> tuple[dict[str, Any], Probe | None]:
    """A hand-off without its ``probe`` block, and the probe (None when not probing)."""
    return {key: value for key, value in config.items() if key != "probe"}, Probe.from_config(config)


def measured(probe: Probe | None, name: str) -> contextlib.AbstractContextManager:
    """``probe.measure(name)``, or nothing when there is no probe."""
    return probe.measure(name) if probe is not None else contextlib.nullcontext()


def capped(probe: Probe | None, n: int, batch_size: int) -> int:
    """``probe.cap(n, batch_size)``, or ``n`` when there is no probe."""
    return probe.cap(n, batch_size) if probe is not None else int(n)


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


def _probe_plan(probe: Probe | None, start_epoch: int, epochs: int) -> dict[int, int]:
    """Epoch -> the steps a probe takes in it: the first half of ``steps`` in the first
    epoch, the rest in the next (after the checkpoint and resume); all in one epoch when
    only one is left."""
    if probe is None or start_epoch >= epochs:
        return {}
    if epochs - start_epoch == 1 or probe.steps == 1:
        return {start_epoch: probe.steps}
    first = math.ceil(probe.steps / 2)
    return {start_epoch: first, start_epoch + 1: probe.steps - first}


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
    plan = _probe_plan(probe, start_epoch, epochs)
    measure = None
    if probe is not None:
        param_mb = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / MB
        measure = _StepMeasure(probe, micro_batch_size, epochs, param_mb)
        micro_batch_size = probe.micro_batch(micro_batch_size)
    diverged = False
    step = 0
    for epoch in range(start_epoch, epochs):
        if probe is not None and epoch not in plan:
            break
        model.train()
        started = time.perf_counter()
        total, count = 0.0, 0
        batches = make_batches(epoch)
        if measure is not None:
            measure.epoch_batches(batches)
        for batch in progress(batches, desc=f"{description} epoch {epoch + 1}/{epochs}", leave=False):
            if probe is not None and count >= plan[epoch]:
                break
            with measure.step(batch) if measure is not None else contextlib.nullcontext(_UNCOUNTED) as counters:
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


@dataclass
class _Counters:
    """What a step's work is counted with: the first piece's forward and backward, and the
    rest of the step (clipping, the optimiser, the scheduler)."""

    first_piece: contextlib.AbstractContextManager | None
    rest: Callable[[], contextlib.AbstractContextManager]


_UNCOUNTED = _Counters(None, contextlib.nullcontext)


class _StepMeasure:
    """A probe's measurements of the optimiser steps inside :func:`fit`.

    The first step is counted (FLOPs and dispatched operations of its first micro-batch,
    scaled to the batch by samples, plus the optimiser's) but not timed, since counting
    slows it down; later steps are timed. Peak memory per step: the host's resident set
    (its growth during the first step, per sample of a micro-batch, is the memory a sample
    costs) and, on CUDA, the device's allocator peak.
    """

    def __init__(self, probe: Probe, micro_batch_size: int | None, epochs: int, param_mb: float) -> None:
        self.probe = probe
        self.micro_batch_size = micro_batch_size  # as configured (the real run's)
        self.piece_size = probe.micro_batch(micro_batch_size)  # as the probe runs it
        self.param_mb = param_mb
        self.pieces: dict[str, float] = {}
        self.epochs = epochs
        self.batches_per_epoch: int | None = None
        self.batch_size: int | None = None
        self.seconds: list[float] = []
        self.first_seconds: float | None = None
        self.work: dict[str, float] = {}
        self.mb_per_sample: float | None = None
        self.device_peak_mb: float | None = None
        self.resumed = False

    def epoch_batches(self, batches: Iterable[Any]) -> None:
        try:
            self.batches_per_epoch = len(batches)  # type: ignore[arg-type]
        except TypeError:
            self.batches_per_epoch = None  # a generator: the real run's length is unknown

    @contextlib.contextmanager
    def step(self, batch: Any) -> Iterator[_Counters]:
        self.batch_size = batch_size_of(batch)
        cuda = torch.cuda.is_available() and any(t.is_cuda for t in _tensors(batch))
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if not self.work:
            counted: dict[str, dict[str, float]] = {}

            @contextlib.contextmanager
            def part(name: str) -> Iterator[None]:
                with count_work() as work:
                    yield
                counted[name] = work
                if name == "piece" and before is not None:
                    # the piece's activations: the growth of the peak, less the gradients it allocated
                    grown = peak_host_mb() - before - self.param_mb
                    self.mb_per_sample = max(grown, 0.0) / piece

            piece = min(self.batch_size, self.piece_size or self.batch_size)
            before = host_mb()
            started = time.perf_counter()
            yield _Counters(part("piece"), lambda: part("rest"))
            if cuda:
                torch.cuda.synchronize()
            self.first_seconds = time.perf_counter() - started
            first, rest = counted.get("piece", {}), counted.get("rest", {})
            # FLOPs scale with the samples; operations come once per piece (the real run's pieces)
            self.pieces = {"piece_samples": piece, "flops_per_piece": first.get("flops", 0.0),
                           "ops_per_piece": first.get("ops", 0.0), "flops_rest": rest.get("flops", 0.0),
                           "ops_rest": rest.get("ops", 0.0)}
            real_pieces = math.ceil(self.batch_size / min(self.batch_size, self.micro_batch_size or self.batch_size))
            self.work = {"flops": first.get("flops", 0.0) * self.batch_size / piece + rest.get("flops", 0.0),
                         "ops": first.get("ops", 0.0) * real_pieces + rest.get("ops", 0.0)}
        else:
            started = time.perf_counter()
            yield _UNCOUNTED
            if cuda:
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - started)
        if cuda:
            peak = torch.cuda.max_memory_allocated() / MB
            self.device_peak_mb = max(self.device_peak_mb or 0.0, peak)

    def summary(self, description: str, epochs_run: int, steps_run: int, diverged: bool) -> dict[str, Any]:
        planned = None if self.batches_per_epoch is None else self.batches_per_epoch * self.epochs
        return {
            "description": description,
            "batch_size": self.batch_size,
            "micro_batch_size": self.micro_batch_size,
            "probe_micro_batch_size": self.piece_size,
            "epochs_planned": self.epochs,
            "batches_per_epoch": self.batches_per_epoch,
            "steps_planned": planned,
            "epochs_run": epochs_run,
            "steps_run": steps_run,
            "step_seconds": self.seconds,
            "first_step_seconds": self.first_seconds,
            "flops_per_step": self.work.get("flops"),
            "ops_per_step": self.work.get("ops"),  # at the configured micro-batch: the real run's launches
            **self.pieces,
            "param_mb": self.param_mb,
            "host_mb_per_sample": self.mb_per_sample,
            "peak_host_mb": peak_host_mb(),
            "peak_device_mb": self.device_peak_mb,
            "resumed": self.resumed,
            "diverged": diverged,
        }


def _tensors(batch: Any) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    return [t for t in batch if isinstance(t, torch.Tensor)] if isinstance(batch, (tuple, list)) else []


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
