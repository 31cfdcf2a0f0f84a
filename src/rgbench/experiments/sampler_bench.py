"""Gibbs sampler speed on the 28x28 4-level Potts lattice, in flips per nanosecond, and the
seed's THRML energy-consistency and energy-speed checks.

flips/ns = chains x 784 x sweeps / elapsed ns, for

- ``block``: our checkerboard sampler (numba kernel on CPUs, tensor path elsewhere),
- ``block_torch``: the same sampler forced onto its tensor path,
- ``sequential``: plain single-site Gibbs in raster order (the reference),
- ``thrml``: Extropic's THRML (JAX) running the same model with the same two blocks as a
  factor graph (``rgbench.models.potts_thrml.LatticeFactorGraph``).

Every implementation samples the same synthetic model (seeded N(0, 1) biases, couplings
0.8). The work per timed run is calibrated by short trial runs to last about ``seconds_per_run``;
the reported time is the median of ``repeats`` runs. THRML's first call (tracing, program
construction and XLA compilation) is timed separately and never counted as sampling; it
runs ``sweeps_per_call`` sweeps per jitted call (10 below 256 chains, so Python dispatch
stays negligible next to its work, else 1). ``mean_energy`` after the runs shows that all
samplers reach the same stationary distribution.

The energy check (seed 003: "JAX vs PyTorch < 0.00003 difference, verified on 4x4 and
28x28 grids"; its test 6 compared one all-ones state on the 28x28 model) compares THRML's
factor energies (float32, its default) with our torch energy (float32) on freshly
initialised models as the seed's (biases N(0, 0.01^2), couplings 0.1), and, for contrast,
at the scale of a trained model: the all-ones state alone, as the seed measured it, and
the largest difference over random states too.

The energy speed check (seed 003: "Energy computation: Vectorized (16.5x faster than
naive)") times a naive energy, a Python loop over the sites and their right and lower
neighbours with one tensor operation per term over a batch of states, against the
vectorised :meth:`PottsModel.energy` on the same states (median of ``repeats``).

Under the paper preset's probe (a ``probe`` block in the hand-off) every row keeps its
chain count and set-up (numba load, THRML compilation), but its timed runs shrink to a few
runs of one unit of sweeps; the sweeps the real run would time follow from the same
per-sweep time by the same calibration, and the row's timing block is scaled by them. The
energy-speed rows keep the probe's few repeats. Everything runs on the CPU but the
``block_torch`` rows (the record says ``cpu_bound``).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from rgbench.config import build
from rgbench.models.potts import PottsConfig, PottsModel
from rgbench.models.potts_samplers import CheckerboardGibbs, sequential_gibbs
from rgbench.probe import Probe, capped, measured, probe_record_path, split_probe
from rgbench.results import provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything

log = get_logger("sampler_bench")

EXPERIMENT = "sampler_bench"
IMPLEMENTATIONS = ("block", "block_torch", "sequential", "thrml")
SIDE = 28
SITES = SIDE * SIDE
COUPLING = 0.8
SEED_INIT = {"bias_sd": 0.01, "coupling": 0.1}  # seed 003's CategoricalEBM.initialize_parameters
CHECKS = ("speed", "energy", "energy_speed")
TRAINED_SCALE = {"bias_sd": 1.0, "coupling": COUPLING}


def random_model(side: int, bias_sd: float, coupling: float, seed: int) -> PottsModel:
    generator = torch.Generator().manual_seed(seed)
    model = PottsModel(PottsConfig(height=side, width=side))
    with torch.no_grad():
        model.bias.copy_(bias_sd * torch.randn(model.bias.shape, generator=generator))
        model.coupling.fill_(coupling)
    return model


def bench_model(seed: int = 0) -> PottsModel:
    """The benchmark's model: N(0, 1) biases, both couplings 0.8 (ordered but still mixing)."""
    return random_model(SIDE, TRAINED_SCALE["bias_sd"], TRAINED_SCALE["coupling"], seed)


@dataclass
class Timing:
    sweeps: int  # sweeps per timed run
    seconds: list[float]
    cpu_seconds: list[float]
    compile_seconds: float
    mean_energy: float


def timed_runs(run: Callable[[int], None], seconds_per_run: float, repeats: int, unit: int = 1,
               fixed_sweeps: int | None = None, max_sweeps: int = 1_000_000, probe: Probe | None = None,
               block: str = "timed_runs") -> tuple[int, list[float], list[float]]:
    """Time ``repeats`` calls of ``run(sweeps)`` (wall and process CPU seconds). Unless
    ``fixed_sweeps``, a one-unit trial and a second trial at the new length pick the
    sweeps (a multiple of ``unit``) so one call lasts about ``seconds_per_run``.

    A ``probe`` times its ``eval_batches`` calls of one unit in the measured ``block``,
    whose cut is the real run's sweeps (the first trial's calibration from the same
    per-sweep time: the unit trial, the second trial and the ``repeats`` timed calls) over
    the sweeps it ran."""
    def calibrate(per_sweep: float) -> int:
        return int(min(max_sweeps, max(1, round(seconds_per_run / per_sweep / unit)))) * unit

    def trial(sweeps: int) -> float:
        started = time.perf_counter()
        run(sweeps)
        return max(time.perf_counter() - started, 1e-6) / sweeps

    def timed(sweeps: int, times: int) -> tuple[list[float], list[float]]:
        walls, cpus = [], []
        for _ in range(times):
            wall, cpu = time.perf_counter(), time.process_time()
            run(sweeps)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        return walls, cpus

    if probe is not None:
        with measured(probe, block, count=False):  # numba and JAX work: timed, not counted
            kept = capped(probe, repeats, 1)
            walls, cpus = timed(unit, kept)
            if fixed_sweeps is None:
                sweeps = calibrate(min(walls) / unit)
                trials = unit + (sweeps if sweeps > unit else 0)
            else:
                sweeps, trials = fixed_sweeps, 0
            probe.cut(trials + repeats * sweeps, kept * unit)
        return unit, walls, cpus
    if fixed_sweeps is None:
        per_sweep = trial(unit)
        sweeps = calibrate(per_sweep)
        if sweeps > unit:
            sweeps = calibrate(trial(sweeps))  # corrects for per-call overheads
    else:
        sweeps = fixed_sweeps
    walls, cpus = timed(sweeps, repeats)
    return sweeps, walls, cpus


def bench_block(chains: int, seconds_per_run: float, repeats: int, seed: int, backend: str = "auto",
                device: str | torch.device = "cpu", fixed_sweeps: int | None = None,
                threads: int | None = None, probe: Probe | None = None, block: str = "timed_runs") -> Timing:
    model = bench_model(seed)
    sampler = CheckerboardGibbs(SIDE, SIDE, device=device, backend=backend, threads=threads)
    started = time.perf_counter()
    sampler.set_parameters(*model.sampler_parameters())
    generator = torch.Generator(device=sampler.device).manual_seed(seed)
    x = torch.randint(0, 4, (chains, SIDE, SIDE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    padded = sampler.pad(x)
    sampler.sweep(padded, 1, generator)  # loads (or compiles) the numba kernel
    setup = time.perf_counter() - started
    sync = torch.cuda.synchronize if sampler.device.type == "cuda" else (lambda: None)

    def run(sweeps: int) -> None:
        sampler.sweep(padded, sweeps, generator)
        sync()

    sweeps, walls, cpus = timed_runs(run, seconds_per_run, repeats, fixed_sweeps=fixed_sweeps, probe=probe, block=block)
    with torch.no_grad():
        energy = float(model.energy(sampler.unpad(padded).cpu()).mean())
    return Timing(sweeps, walls, cpus, setup, energy)


def bench_sequential(chains: int, seconds_per_run: float, repeats: int, seed: int,
                     fixed_sweeps: int | None = None, probe: Probe | None = None, block: str = "timed_runs") -> Timing:
    model = bench_model(seed)
    bias, w_h, w_v = model.sampler_parameters()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (chains, SIDE, SIDE), dtype=torch.uint8, generator=generator)

    def run(sweeps: int) -> None:
        sequential_gibbs(x, bias, w_h, w_v, sweeps, generator)

    sweeps, walls, cpus = timed_runs(run, seconds_per_run, repeats, fixed_sweeps=fixed_sweeps, probe=probe, block=block)
    with torch.no_grad():
        return Timing(sweeps, walls, cpus, 0.0, float(model.energy(x).mean()))


def thrml_sweeps_per_call(chains: int) -> int:
    return 10 if chains < 256 else 1


def bench_thrml(chains: int, seconds_per_run: float, repeats: int, seed: int,
                fixed_sweeps: int | None = None, probe: Probe | None = None, block: str = "timed_runs") -> Timing:
    from rgbench.models.potts_thrml import configure_jax

    configure_jax(max(1, torch.get_num_threads()))
    import jax

    from rgbench.models.potts_thrml import LatticeFactorGraph, ThrmlSampler

    model = bench_model(seed)
    graph = LatticeFactorGraph(SIDE, SIDE)
    bias, w_h, w_v = model.sampler_parameters()
    params = tuple(jax.numpy.asarray(p) for p in (bias.numpy().reshape(1, SITES, 4), np.float32(w_h), np.float32(w_v)))
    per_call = thrml_sweeps_per_call(chains)
    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=per_call)
    rng = np.random.default_rng(seed)
    state = [jax.numpy.asarray(s) for s in graph.to_state(rng.integers(0, 4, (chains, SIDE, SIDE)))]
    counter = [0]

    def step(current: list) -> list:
        counter[0] += 1
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), counter[0]), chains)
        return jax.block_until_ready(sampler._fn(keys, current, [], params))

    started = time.perf_counter()
    state = step(state)  # trace, build the program, compile, one call
    compile_seconds = time.perf_counter() - started

    def run(sweeps: int) -> None:
        for _ in range(sweeps // per_call):
            state[:] = step(state)

    sweeps, walls, cpus = timed_runs(run, seconds_per_run, repeats, unit=per_call, fixed_sweeps=fixed_sweeps,
                                     probe=probe, block=block)
    images = graph.to_images(state)
    with torch.no_grad():
        energy = float(model.energy(torch.from_numpy(images)).mean())
    return Timing(sweeps, walls, cpus, compile_seconds, energy)


def run_bench(implementation: str, chains: int, seconds_per_run: float, repeats: int, seed: int,
              device: str | torch.device = "cpu", threads: int | None = None, probe: Probe | None = None,
              block: str = "timed_runs") -> dict[str, Any]:
    """One (implementation, chains) measurement as a table row's metrics (a ``probe``'s
    timed runs in its measured ``block``, see :func:`timed_runs`)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if chains < 1 or repeats < 1 or seconds_per_run <= 0:
        raise ValueError("chains and repeats must be >= 1 and seconds_per_run > 0")
    if implementation == "block":
        timing = bench_block(chains, seconds_per_run, repeats, seed, "auto", device, threads=threads, probe=probe,
                             block=block)
        backend = CheckerboardGibbs(SIDE, SIDE, device=device).backend
    elif implementation == "block_torch":
        timing = bench_block(chains, seconds_per_run, repeats, seed, "torch", device, probe=probe, block=block)
        backend = "torch"
    elif implementation == "sequential":
        timing = bench_sequential(chains, seconds_per_run, repeats, seed, probe=probe, block=block)
        backend = "torch"
    else:
        timing = bench_thrml(chains, seconds_per_run, repeats, seed, probe=probe, block=block)
        backend = "jax"
    median = statistics.median(timing.seconds)
    flips = chains * SITES * timing.sweeps
    return {"implementation": implementation, "chains": chains, "sweeps": timing.sweeps,
            "flips_per_ns": flips / (median * 1e9), "median_seconds": median,
            "min_seconds": min(timing.seconds), "max_seconds": max(timing.seconds), "repeats": repeats,
            "flips_per_cpu_ns": flips / (statistics.median(timing.cpu_seconds) * 1e9),
            "compile_seconds": timing.compile_seconds, "mean_energy": timing.mean_energy,
            "energy_per_site": timing.mean_energy / SITES, "backend": backend,
            "threads": threads or torch.get_num_threads()}


def speedups(rows: list[Mapping[str, Any]], baseline: str = "thrml", ours: str = "block") -> dict[int, float]:
    """flips/ns of ``ours`` over ``baseline`` at each chain count both were measured at."""
    by = {(r["implementation"], int(r["chains"])): float(r["flips_per_ns"]) for r in rows}
    return {c: by[(ours, c)] / by[(baseline, c)] for (impl, c) in by if impl == baseline and (ours, c) in by
            and by[(baseline, c)] > 0 and not math.isnan(by[(baseline, c)])}


# ----------------------------------------------------------------------------- energy check

def energy_check(side: int, states: int, init: Mapping[str, float], seed: int) -> dict[str, Any]:
    """Largest |THRML energy - torch energy| over random states and the all-ones state of
    the seed's check, for a fresh model of the given initial scale. THRML's energy is
    float32 (its default); the float64 columns show which side carries the round-off."""
    from rgbench.models.potts_thrml import configure_jax

    configure_jax(max(1, torch.get_num_threads()))
    import jax.numpy as jnp

    from rgbench.models.potts_thrml import LatticeFactorGraph

    model = random_model(side, init["bias_sd"], init["coupling"], seed)
    generator = torch.Generator().manual_seed(seed + 1)
    images = torch.randint(0, 4, (states, side, side), dtype=torch.uint8, generator=generator)
    images[0] = 1  # the seed's test 6 compared the all-ones state
    bias, w_h, w_v = model.sampler_parameters()
    graph = LatticeFactorGraph(side, side)
    thrml = graph.energy(images.numpy(), jnp.asarray(bias.numpy().reshape(1, side * side, 4)), np.float32(w_h),
                         np.float32(w_v)).astype(np.float64)
    with torch.no_grad():
        torch32 = model.energy(images).double().numpy()
        model64 = PottsModel(PottsConfig(height=side, width=side)).double()
        model64.load_state_dict(model.state_dict())
        exact = model64.energy(images).numpy()
    return {"energy_states": states, "energy_max_abs_diff": float(np.abs(thrml - torch32).max()),
            "energy_ones_abs_diff": float(abs(thrml[0] - torch32[0])),
            "energy_thrml_vs_float64": float(np.abs(thrml - exact).max()),
            "energy_torch_vs_float64": float(np.abs(torch32 - exact).max()),
            "energy_mean_abs": float(np.abs(exact).mean())}


def naive_energy(bias: torch.Tensor, w_h: float, w_v: float, x: torch.Tensor) -> torch.Tensor:
    """The Potts energy term by term: a Python loop over the sites, each site's bias and its
    right and lower neighbour pairs one tensor operation over the batch ``x`` (N, H, W)."""
    height, width = x.shape[1:]
    x = x.long()
    energy = torch.zeros(len(x), dtype=bias.dtype)
    for i in range(height):
        for j in range(width):
            energy -= bias[i, j][x[:, i, j]]
            if j + 1 < width:
                energy -= w_h * (x[:, i, j] == x[:, i, j + 1])
            if i + 1 < height:
                energy -= w_v * (x[:, i, j] == x[:, i + 1, j])
    return energy


def energy_speed(side: int, states: int, repeats: int, seed: int) -> dict[str, Any]:
    """Seconds per energy of ``states`` random states of a fresh model (the seed's
    initial scale), naive loop vs vectorised, each the fastest of ``repeats`` timings (other
    work on the machine only ever adds time, so the minimum is the least disturbed estimate
    of a call's cost; medians of a few timings swung the ratio 78x-403x on a busy machine);
    the vectorised call is repeated within a timing to last about as long as a naive one."""
    model = random_model(side, SEED_INIT["bias_sd"], SEED_INIT["coupling"], seed)
    x = torch.randint(0, 4, (states, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    bias, (w_h, w_v) = model.bias[0].detach(), model.coupling.detach().tolist()

    def timed(call: Callable[[], Any], times: int = 1) -> float:
        started = time.perf_counter()
        for _ in range(times):
            call()
        return (time.perf_counter() - started) / times

    with torch.no_grad():
        mismatch = float((naive_energy(bias, w_h, w_v, x) - model.energy(x)).abs().max())
        naive = min(timed(lambda: naive_energy(bias, w_h, w_v, x)) for _ in range(repeats))
        calls = max(1, round(naive / max(timed(lambda: model.energy(x)), 1e-7)))
        vectorised = min(timed(lambda: model.energy(x), calls) for _ in range(repeats))
    return {"energy_states": states, "naive_seconds": naive, "vectorised_seconds": vectorised,
            "energy_speedup": naive / vectorised, "vectorised_calls": calls, "repeats": repeats,
            "naive_vs_vectorised_max_abs_diff": mismatch}


# ----------------------------------------------------------------------------- the job

@dataclass
class SamplerBenchConfig:
    seconds_per_run: float
    repeats: int
    seed: int
    energy_states: int
    # run_id -> {check: speed, implementation, chains}, {check: energy, side, init, seed} or
    # {check: energy_speed, side, seed}
    runs: dict[str, dict[str, Any]]


def run_job(config: Mapping[str, Any], outputs: Mapping[str, str], device: str = "auto") -> list[dict[str, Any]]:
    """Every row of the benchmark in one process, one after the other (so no row times
    another's work); ``outputs`` maps run_id -> metrics.json. A GPU, when present, is used
    only by ``block_torch`` (the tensor path); the other samplers are CPU samplers. A
    ``probe`` block cuts each row's timed work (module docstring) and leaves the probe
    record beside the rows' directories."""
    settings, probe = split_probe(config)
    cfg = build(SamplerBenchConfig, settings)
    seed_everything(cfg.seed)
    rows = []
    for key, spec in cfg.runs.items():
        started = time.perf_counter()
        if spec["check"] == "speed":
            implementation, chains = spec["implementation"], int(spec["chains"])
            torch_device = pick_device(device) if implementation == "block_torch" else torch.device("cpu")
            metrics = run_bench(implementation, chains, cfg.seconds_per_run, cfg.repeats, cfg.seed, torch_device,
                                probe=probe, block=key)
            log.info("%s chains=%d sweeps=%d: %.4f flips/ns (%.4f per CPU-ns)", implementation, chains,
                     metrics["sweeps"], metrics["flips_per_ns"], metrics["flips_per_cpu_ns"])
            described, n_params = describe_device(torch_device), SITES * 4 + 2
        elif spec["check"] == "energy":
            init = SEED_INIT if spec["init"] == "seed" else TRAINED_SCALE
            metrics = energy_check(int(spec["side"]), cfg.energy_states, init, int(spec["seed"]))
            log.info("energy check %dx%d (%s init): max |dE| %.3g, all-ones state %.3g", spec["side"], spec["side"],
                     spec["init"], metrics["energy_max_abs_diff"], metrics["energy_ones_abs_diff"])
            described, n_params = "cpu (jax)", int(spec["side"]) ** 2 * 4 + 2
        elif spec["check"] == "energy_speed":
            with measured(probe, key, count=False):
                metrics = energy_speed(int(spec["side"]), cfg.energy_states, capped(probe, cfg.repeats, 1),
                                       int(spec["seed"]))
            log.info("energy speed %dx%d: naive %.3g s, vectorised %.3g s (%.1fx)", spec["side"], spec["side"],
                     metrics["naive_seconds"], metrics["vectorised_seconds"], metrics["energy_speedup"])
            described, n_params = describe_device(torch.device("cpu")), int(spec["side"]) ** 2 * 4 + 2
        else:
            raise ValueError(f"{key}: unknown check {spec['check']!r}; known: {CHECKS}")
        params = {k: v for k, v in spec.items() if k != "seed"}
        write_metrics(outputs[key], experiment=EXPERIMENT, run_id=key, params=params,
                      seed=int(spec.get("seed", cfg.seed)),
                      metrics={k: v for k, v in metrics.items() if k not in params},
                      wall_seconds=time.perf_counter() - started, device=described,
                      provenance=provenance(n_train=0, n_val=0, n_test=0, data_sha256="none: random Potts model",
                                            n_params=n_params, probe=probe is not None))
        rows.append({**params, **metrics})
    if probe is not None and outputs:
        run_dir = Path(next(iter(outputs.values()))).parent.parent  # runs/sampler_bench
        probe.write(probe_record_path(run_dir, probe), device=describe_device(pick_device(device)), n_params=None,
                    cpu_bound=True)
    return rows
