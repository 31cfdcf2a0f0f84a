"""Where a job's wall time goes: start-up, loading, compilation, compute and writing.

Every Snakemake job runs as a fresh Python process, and before it computes anything it
pays for the interpreter, Snakemake's script preamble and its imports (torch, JAX); then
it reads its inputs, may compile kernels (numba, JAX) and writes its outputs. The cost
table shows these phases per job (``results/tables/costs.csv``) so the report can say
where the default DAG's minutes go.

One clock per process. Shared machinery marks its own phase (:func:`phase`: the npz and
checkpoint loaders mark ``load``, atomic writers mark ``write``); JIT compilers report
their compile time through their own event hooks (:func:`watch_compilers`), which is
moved out of whatever phase was running. Phases are exclusive: a write inside a load is
counted once, as a write. Whatever no phase claims is ``compute``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

PHASES = ("startup", "load", "compile", "compute", "write")
SIDECAR_SUFFIX = ".phases.json"


class PhaseClock:
    """Exclusive wall-clock totals per phase for the current process."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {name: 0.0 for name in PHASES}
        self._stack: list[list[Any]] = []  # [name, resumed_at] of every open phase
        self.started: float | None = None

    def start(self) -> None:
        """Begin the job's own time (everything before it is start-up)."""
        self.totals = {name: 0.0 for name in PHASES}
        self.started = time.perf_counter()
        self._stack = [["compute", self.started]]

    def _charge_top(self, now: float) -> None:
        if self._stack:
            name, resumed = self._stack[-1]
            self.totals[name] += now - resumed
            self._stack[-1][1] = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {PHASES}")
        if not self._stack:  # outside a job (tests, notebooks): nothing to account
            yield
            return
        now = time.perf_counter()
        self._charge_top(now)
        self._stack.append([name, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self._charge_top(now)
            self._stack.pop()
            if self._stack:
                self._stack[-1][1] = now

    def move(self, name: str, seconds: float) -> None:
        """Reassign ``seconds`` already spent in the running phase to ``name`` (a JIT
        compiler reports its compile time only once it is over)."""
        if not self._stack or seconds <= 0:
            return
        self._charge_top(time.perf_counter())
        running = self._stack[-1][0]
        taken = min(seconds, self.totals[running])
        self.totals[running] -= taken
        self.totals[name] += taken

    def finish(self, startup_s: float | None) -> dict[str, float]:
        """Close the job's clock: seconds per phase, ``startup`` being ``startup_s`` (process
        start to job start, measured by the caller), ``job_s`` (the job's own time) and
        ``cpu`` (the process's CPU seconds since it started)."""
        if self.started is None:
            raise RuntimeError("the phase clock was never started")
        ended = time.perf_counter()
        self._charge_top(ended)
        totals = dict(self.totals)
        totals["startup"] = float(startup_s) if startup_s is not None else float("nan")
        totals["job_s"] = ended - self.started
        times = os.times()  # the process's CPU seconds, every thread and waited-for child
        totals["cpu"] = times.user + times.system + times.children_user + times.children_system
        self._stack = []
        return totals


CLOCK = PhaseClock()


def phase(name: str) -> contextlib.AbstractContextManager:
    """Charge the enclosed time to ``name`` (a no-op outside a job)."""
    return CLOCK.phase(name)


def seconds_since_process_start() -> float | None:
    """Wall seconds since this process was created (interpreter start included)."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process(os.getpid()).create_time())
    except Exception:  # psutil missing or /proc unreadable: start-up stays unknown
        return None


class _NumbaCompileListener:
    """numba's compile events, outermost only (a kernel compiles its inlined callees)."""

    def __init__(self) -> None:
        from numba.core import event

        class Listener(event.Listener):
            depth = 0
            began = 0.0

            def on_start(inner, _event: Any) -> None:  # noqa: N805
                if inner.depth == 0:
                    inner.began = time.perf_counter()
                inner.depth += 1

            def on_end(inner, _event: Any) -> None:  # noqa: N805
                inner.depth -= 1
                if inner.depth == 0:
                    CLOCK.move("compile", time.perf_counter() - inner.began)

        self.listener = Listener()
        event.register("numba:compile", self.listener)


# JAX reports each compilation stage as a duration event; these three are the time from
# a traced function to an executable (or to one loaded from the persistent cache).
JAX_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


_WATCHED: set[str] = set()


def watch_compilers() -> None:
    """Move numba's and JAX's compile time into ``compile``, for each of them this process
    has imported. Call it again after a late first import (it never registers twice)."""
    if "numba" in sys.modules and "numba" not in _WATCHED:
        _WATCHED.add("numba")
        with contextlib.suppress(Exception):
            _NumbaCompileListener()
    if "jax" in sys.modules and "jax" not in _WATCHED:
        _WATCHED.add("jax")
        with contextlib.suppress(Exception):
            import jax.monitoring

            def on_duration(event: str, seconds: float, **_: Any) -> None:
                if event in JAX_COMPILE_EVENTS:
                    CLOCK.move("compile", float(seconds))

            jax.monitoring.register_event_duration_secs_listener(on_duration)


def sidecar_path(log_path: str | os.PathLike) -> Path:
    """Where a job's phases are written: beside its log (``<log>.phases.json``)."""
    return Path(f"{log_path}{SIDECAR_SUFFIX}")
