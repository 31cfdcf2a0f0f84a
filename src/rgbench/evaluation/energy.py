"""Energy per sample: measured from the kernel's RAPL counters where
``/sys/class/powercap`` exposes them, otherwise estimated as CPU seconds times a stated
power per core. The method travels with every number (the generative table's
``energy_method`` column), so a reader never mistakes an estimate for a measurement.

RAPL's package counters cover the whole CPU package: a measurement is only the sampler's
own on an otherwise idle machine, which is how benchmarks here are meant to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
RAPL_METHOD = "rapl_package"


def estimate_method(watts_per_core: float) -> str:
    """The ``energy_method`` of an estimate: CPU seconds times ``watts_per_core``."""
    return f"cpu_seconds_x_{watts_per_core:g}_w_per_core"


def package_domains(root: str | os.PathLike = POWERCAP) -> list[Path]:
    """The readable top-level RAPL package domains (``intel-rapl:0``, ``intel-rapl:1``, ...;
    AMD's kernels expose theirs under the same name). Sub-domains (``intel-rapl:0:0``,
    core or DRAM) are parts of a package and would be counted twice."""
    root = Path(root)
    if not root.is_dir():
        return []
    domains = []
    for path in sorted(root.glob("intel-rapl:*")):
        if path.name.count(":") == 1 and os.access(path / "energy_uj", os.R_OK):
            domains.append(path)
    return domains


def _read_uj(path: Path) -> int:
    return int((path / "energy_uj").read_text().strip())


@dataclass
class RaplMeter:
    """Joules the CPU packages used between ``start()`` and ``stop()``; ``joules`` is None
    where no counter can be read. A counter that wrapped once (it counts up to
    ``max_energy_range_uj``) is corrected."""

    root: str | os.PathLike = POWERCAP
    joules: float | None = None
    _domains: list[Path] = field(default_factory=list)
    _start: list[int] = field(default_factory=list)

    def __enter__(self) -> "RaplMeter":
        self._domains = package_domains(self.root)
        self._start = [_read_uj(d) for d in self._domains]
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._domains:
            return
        total = 0
        for domain, start in zip(self._domains, self._start):
            end = _read_uj(domain)
            if end < start:
                end += int((domain / "max_energy_range_uj").read_text().strip())
            total += end - start
        self.joules = total / 1e6


def energy_per_sample(cpu_seconds_per_sample: float | None, measured_joules_per_sample: float | None,
                      watts_per_core: float) -> tuple[float | None, str]:
    """(joules per sample, method): the RAPL measurement when there is one, else the
    estimate from CPU seconds (None when neither is known)."""
    if measured_joules_per_sample is not None:
        return float(measured_joules_per_sample), RAPL_METHOD
    if watts_per_core <= 0:
        raise ValueError(f"watts_per_core must be > 0, got {watts_per_core}")
    if cpu_seconds_per_sample is None:
        return None, estimate_method(watts_per_core)
    return float(cpu_seconds_per_sample) * watts_per_core, estimate_method(watts_per_core)
