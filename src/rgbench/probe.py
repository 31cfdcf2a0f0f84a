"""The paper preset's probe: a job run at its real size for a few steps, and what it measured.

A :class:`Probe` (the config's ``probe`` block, handed to a job only while the probe is
active, see ``probe_handoff`` in workflow/rules/common.smk) runs a job at its real model,
batch and chain sizes but stops its loops early:

- training through :func:`rgbench.training.fit` takes ``steps`` optimiser steps over (at
  most) two epochs, with a checkpoint saved after the first and loaded back as a resumed run
  reads it (:meth:`Probe.epoch_plan`); :class:`StepMeasure` measures those steps (seconds,
  FLOPs and dispatched operations, peak memory);
- a loop that is not ``fit``'s (a stream of model updates, say) takes ``steps`` items,
  each timed (:meth:`Probe.timed_steps`);
- an evaluation loop keeps ``eval_batches`` batches (:func:`capped`) inside a
  :meth:`Probe.measure` block, which records by how much the loop was cut.

The job then writes a probe record (:meth:`Probe.write`, at :func:`probe_record_path`),
from which ``rgbench.summary.paper_cost`` scales the measurements up to the real run.
Jobs without a probe pass ``None`` everywhere: :func:`capped` and :func:`measured` then
change nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

from rgbench.io import write_json_atomic

MB = 1024**2
T = TypeVar("T")


_work_counter_class: type | None = None


def _work_counter() -> Any:
    """A fresh :class:`_WorkCounter`. Defined on first use: torch is imported only by jobs
    that count torch work, so the numpy-only jobs (the RGM) start without it (~2 s each)."""
    global _work_counter_class
    if _work_counter_class is None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        class _WorkCounter(TorchDispatchMode):
            """Counts the aten operations dispatched (on a GPU each is at least one kernel
            launch, which is what bounds the step time of small models) and their FLOPs, by
            torch's own FLOP formulas (torch.utils.flop_counter: matmuls, convolutions,
            attention). Not FlopCounterMode itself: its module tracking keeps every
            micro-batch's activations alive until the block ends (measured: 1.2 GB a sample
            instead of 0.19 for RG-Flow)."""

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

        _work_counter_class = _WorkCounter
    return _work_counter_class()


@contextlib.contextmanager
def count_work() -> Iterator[dict[str, float]]:
    """FLOPs and dispatched operations of the block (:func:`_work_counter`); the dict is
    filled in when the block ends."""
    counted: dict[str, float] = {}
    with _work_counter() as counter:
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


def fit_record(description: str, *, steps_planned: int | None, steps_run: int, step_seconds: list[float],
               first_step_seconds: float | None, batch_size: int | None, epochs_planned: int,
               epochs_run: int, batches_per_epoch: int | None, **measured: Any) -> dict[str, Any]:
    """One training loop's entry in a probe record (what ``rgbench.summary.paper_cost``
    scales): the real run's steps and epochs, the probe's steps and their seconds (the
    first apart: it may also have paid for counting its work), and whatever else was
    measured (FLOPs and operations per step, peak memory, micro-batches, resume)."""
    record = {"description": description, "batch_size": batch_size, "micro_batch_size": None,
              "probe_micro_batch_size": None, "epochs_planned": epochs_planned,
              "batches_per_epoch": batches_per_epoch, "steps_planned": steps_planned, "epochs_run": epochs_run,
              "steps_run": steps_run, "step_seconds": list(step_seconds), "first_step_seconds": first_step_seconds,
              "flops_per_step": None, "ops_per_step": None, "param_mb": None, "host_mb_per_sample": None,
              "peak_host_mb": peak_host_mb(), "peak_device_mb": None, "resumed": False, "diverged": False}
    record.update(measured)
    return record


@dataclass
class Probe:
    """The config's ``probe`` block as a job receives it (only while the probe is active).

    ``steps``: optimiser steps (or model updates) in all (a checkpoint is saved and resumed
    from after the first half); ``eval_batches``: batches each evaluation loop keeps;
    ``rule``, ``family`` and ``benchmark``: the job that measured, its resource family, and
    its Snakemake benchmark file (which gives wall time and peak memory); ``represents``: how
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

    def epoch_plan(self, start_epoch: int, epochs: int) -> dict[int, int]:
        """Epoch -> the steps the probe takes in it: the first half of ``steps`` in the first
        epoch, the rest in the next (after the checkpoint and resume); all in one epoch when
        only one is left."""
        if start_epoch >= epochs:
            return {}
        if epochs - start_epoch == 1 or self.steps == 1:
            return {start_epoch: self.steps}
        first = math.ceil(self.steps / 2)
        return {start_epoch: first, start_epoch + 1: self.steps - first}

    def cap(self, n: int, batch_size: int, minimum: int = 1) -> int:
        """How many of ``n`` items an evaluation loop in batches of ``batch_size`` keeps:
        ``eval_batches`` batches, and at least ``minimum`` (what its estimator needs, e.g.
        the length of an autocorrelation series). The cut is recorded on the open
        :meth:`measure` block (:meth:`cut`)."""
        kept = min(int(n), max(self.eval_batches * max(int(batch_size), 1), int(minimum)))
        self.cut(n, kept)
        return kept

    def cut(self, full: float, kept: float) -> None:
        """Record on the open :meth:`measure` block that its loop did ``kept`` of the real
        run's ``full`` units of work. A block keeps the largest cut of its loops, so its time
        scales to the real run as an upper bound."""
        if self._open and kept > 0:
            block = self.blocks[self._open[-1]]
            block["scale"] = max(block["scale"], float(full) / float(kept))

    def _block(self, name: str) -> dict[str, float]:
        return self.blocks.setdefault(name, {"seconds": 0.0, "flops": 0.0, "ops": 0.0, "calls": 0, "scale": 1.0})

    @contextlib.contextmanager
    def measure(self, name: str, count: bool = True) -> Iterator[None]:
        """Time (and with ``count``, count the torch work of) a block: an evaluation, a
        per-epoch validation, a timed benchmark loop. A block entered again accumulates
        (``calls`` counts the entries). ``count=False`` for loops whose work torch does not
        see or whose timing the counting would disturb (numba kernels, benchmarks)."""
        block = self._block(name)
        self._open.append(name)
        started = time.perf_counter()
        work: dict[str, float] = {}
        try:
            with count_work() if count else contextlib.nullcontext(work) as work:
                yield
        finally:
            self._open.pop()
        block["seconds"] += time.perf_counter() - started
        block["flops"] += work.get("flops", 0.0)
        block["ops"] += work.get("ops", 0.0)
        block["calls"] += 1

    def add_block(self, name: str, seconds: float, full: float, kept: float) -> None:
        """A block timed by the job itself (``seconds`` of work that is ``kept`` of the real
        run's ``full`` units): for loops whose first call also compiles, so that only the
        calls after it are scaled (the compilation stays in the job's unscaled overhead)."""
        block = self._block(name)
        block["seconds"] += float(seconds)
        block["calls"] += 1
        if kept > 0:
            block["scale"] = max(block["scale"], float(full) / float(kept))

    def timed_steps(self, items: Iterable[T], description: str, steps_planned: int,
                    batch_size: int = 1) -> Iterator[T]:
        """``items`` one by one, each item's work (the time until the next is asked for)
        timed: the steps of a loop that is not :func:`rgbench.training.fit`'s (a stream of
        model updates, say). The caller keeps ``steps`` of the real run's ``steps_planned``
        items; the loop's entry joins ``fits`` when it ends."""
        seconds: list[float] = []
        try:
            for item in items:
                started = time.perf_counter()
                yield item
                seconds.append(time.perf_counter() - started)
        finally:
            self.fits.append(fit_record(description, steps_planned=int(steps_planned), steps_run=len(seconds),
                                        step_seconds=seconds[1:], first_step_seconds=seconds[0] if seconds else None,
                                        batch_size=batch_size, epochs_planned=1, epochs_run=1,
                                        batches_per_epoch=int(steps_planned)))

    def record(self, **job: Any) -> dict[str, Any]:
        settings = {key: value for key, value in asdict(self).items() if key not in ("fits", "blocks", "_open")}
        return {**settings, **job, "fits": self.fits, "blocks": self.blocks}

    def write(self, path: str | os.PathLike, **job: Any) -> dict[str, Any]:
        """Write the probe record (what ``rgbench.summary.paper_cost`` reads) to ``path``;
        ``job`` adds what the job knows about itself (``device``, ``n_params``, and
        ``cpu_bound=True`` when its measured loops run on the CPU whatever device the job
        was given, so that no GPU speed is assumed for them)."""
        record = self.record(**job)
        write_json_atomic(path, record)
        return record


def probe_record_path(run_dir: str | os.PathLike, probe: Probe) -> Path:
    """Where a job's probe record goes: its run directory, named after its rule."""
    return Path(run_dir) / f"probe_{probe.rule}.json"


def split_probe(config: Mapping[str, Any]) -> tuple[dict[str, Any], Probe | None]:
    """A hand-off without its ``probe`` block, and the probe (None when not probing)."""
    return {key: value for key, value in config.items() if key != "probe"}, Probe.from_config(config)


def measured(probe: Probe | None, name: str, count: bool = True) -> contextlib.AbstractContextManager:
    """``probe.measure(name, count)``, or nothing when there is no probe."""
    return probe.measure(name, count) if probe is not None else contextlib.nullcontext()


def capped(probe: Probe | None, n: int, batch_size: int, minimum: int = 1) -> int:
    """``probe.cap(n, batch_size, minimum)``, or ``n`` when there is no probe."""
    return probe.cap(n, batch_size, minimum) if probe is not None else int(n)


def probe_steps(probe: Probe | None, n: int) -> int:
    """How many of a loop's ``n`` model updates a probe takes (``probe.steps``), or ``n``."""
    return min(int(n), probe.steps) if probe is not None else int(n)


# --------------------------------------------------------------------------- fit()'s steps


@dataclass
class Counters:
    """What a step's work is counted with: the first piece's forward and backward, and the
    rest of the step (clipping, the optimiser, the scheduler)."""

    first_piece: contextlib.AbstractContextManager | None
    rest: Callable[[], contextlib.AbstractContextManager]


UNCOUNTED = Counters(None, contextlib.nullcontext)


class StepMeasure:
    """A probe's measurements of the optimiser steps inside :func:`rgbench.training.fit`.

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
    def step(self, batch_size: int, cuda: bool) -> Iterator[Counters]:
        """Measure one optimiser step of ``batch_size`` samples (``cuda``: on a GPU)."""
        import torch  # only torch training loops get here (see _work_counter)

        self.batch_size = batch_size
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
            yield Counters(part("piece"), lambda: part("rest"))
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
            yield UNCOUNTED
            if cuda:
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - started)
        if cuda:
            peak = torch.cuda.max_memory_allocated() / MB
            self.device_peak_mb = max(self.device_peak_mb or 0.0, peak)

    def summary(self, description: str, epochs_run: int, steps_run: int, diverged: bool) -> dict[str, Any]:
        planned = None if self.batches_per_epoch is None else self.batches_per_epoch * self.epochs
        return fit_record(
            description, steps_planned=planned, steps_run=steps_run, step_seconds=self.seconds,
            first_step_seconds=self.first_seconds, batch_size=self.batch_size, epochs_planned=self.epochs,
            epochs_run=epochs_run, batches_per_epoch=self.batches_per_epoch,
            micro_batch_size=self.micro_batch_size, probe_micro_batch_size=self.piece_size,
            flops_per_step=self.work.get("flops"),
            ops_per_step=self.work.get("ops"),  # at the configured micro-batch: the real run's launches
            **self.pieces, param_mb=self.param_mb, host_mb_per_sample=self.mb_per_sample,
            peak_device_mb=self.device_peak_mb, resumed=self.resumed, diverged=diverged)
