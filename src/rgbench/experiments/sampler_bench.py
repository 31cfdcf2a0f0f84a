"""Gibbs sampler speed on the 28x28 4-level Potts grid, in flips per nanosecond.

flips/ns = chains x 784 x sweeps / elapsed ns, for

- ``block``: our checkerboard sampler (C kernel on CPUs, tensor path elsewhere),
- ``block_torch``: the same sampler forced onto its tensor path,
- ``sequential``: plain single-site Gibbs in raster order (the reference),
- ``thrml``: Extropic's THRML (JAX) running the same model with the same two blocks,
  when the optional ``thrml`` package is importable.

Every implementation samples the same synthetic model (seeded biases, couplings 0.8).
Sweeps per timed run are calibrated by a probe run to last about ``seconds_per_run``;
the reported time is the median of ``repeats`` runs; THRML's jit compile is timed
separately. ``mean_energy`` after the runs shows that all samplers reach the same
stationary distribution (same model, same energy scale).
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from rgbench.config import build
from rgbench.models.potts import PottsConfig, PottsModel
from rgbench.models.potts_samplers import CheckerboardGibbs, sequential_gibbs
from rgbench.results import provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything

log = get_logger("sampler_bench")

EXPERIMENT = "sampler_bench"
IMPLEMENTATIONS = ("block", "block_torch", "sequential", "thrml")
SIDE = 28
SITES = SIDE * SIDE
COUPLING = 0.8


def thrml_available() -> bool:
    return importlib.util.find_spec("thrml") is not None and importlib.util.find_spec("jax") is not None


def bench_model(seed: int = 0) -> PottsModel:
    """The benchmark's model: N(0, 1) biases, both couplings 0.8 (ordered but still mixing)."""
    generator = torch.Generator().manual_seed(seed)
    model = PottsModel(PottsConfig(height=SIDE, width=SIDE))
    with torch.no_grad():
        model.bias.copy_(torch.randn(model.bias.shape, generator=generator))
        model.coupling.fill_(COUPLING)
    return model


@dataclass
class Timing:
    sweeps: int
    seconds: list[float]
    compile_seconds: float
    mean_energy: float


def _calibrated(run: Callable[[int], None], chains: int, seconds_per_run: float, repeats: int,
                fixed_sweeps: int | None = None, max_sweeps: int = 100_000,
                prepare: Callable[[int], None] | None = None) -> tuple[int, list[float]]:
    """Probe with one sweep, pick sweeps so a run lasts about ``seconds_per_run``, time
    ``repeats`` runs (or time ``repeats`` runs of exactly ``fixed_sweeps``). ``prepare``
    (untimed) runs before every timed call with the same sweep count: THRML compiles
    one program per sweep count, and compiling must never be timed as sampling."""
    if prepare is None:
        prepare = lambda sweeps: None  # noqa: E731
    def timed_repeats(sweeps: int) -> tuple[int, list[float]]:
        prepare(sweeps)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run(sweeps)
            times.append(time.perf_counter() - started)
        return sweeps, times

    if fixed_sweeps is not None:
        return timed_repeats(fixed_sweeps)
    prepare(1)
    started = time.perf_counter()
    run(1)
    probe = max(time.perf_counter() - started, 1e-6)
    sweeps = int(min(max_sweeps, max(1, round(seconds_per_run / probe))))
    if sweeps > 1:
        # one more probe at the new length corrects for per-call overheads
        prepare(sweeps)
        started = time.perf_counter()
        run(sweeps)
        per_sweep = max(time.perf_counter() - started, 1e-6) / sweeps
        sweeps = int(min(max_sweeps, max(1, round(seconds_per_run / per_sweep))))
    return timed_repeats(sweeps)


def bench_block(chains: int, seconds_per_run: float, repeats: int, seed: int, backend: str = "auto",
                device: str | torch.device = "cpu", fixed_sweeps: int | None = None) -> Timing:
    model = bench_model(seed)
    sampler = CheckerboardGibbs(SIDE, SIDE, device=device, backend=backend)
    started = time.perf_counter()
    sampler.set_parameters(*model.sampler_parameters())
    setup = time.perf_counter() - started
    generator = torch.Generator(device=sampler.device).manual_seed(seed)
    x = torch.randint(0, 4, (chains, SIDE, SIDE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    padded = sampler.pad(x)
    sync = torch.cuda.synchronize if sampler.device.type == "cuda" else (lambda: None)

    def run(sweeps: int) -> None:
        sampler.sweep(padded, sweeps, generator)
        sync()

    sweeps, times = _calibrated(run, chains, seconds_per_run, repeats, fixed_sweeps)
    with torch.no_grad():
        energy = float(model.energy(sampler.unpad(padded).cpu()).mean())
    return Timing(sweeps, times, setup, energy)


def bench_sequential(chains: int, seconds_per_run: float, repeats: int, seed: int,
                     fixed_sweeps: int | None = None) -> Timing:
    model = bench_model(seed)
    bias, w_h, w_v = model.sampler_parameters()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (chains, SIDE, SIDE), dtype=torch.uint8, generator=generator)

    def run(sweeps: int) -> None:
        sequential_gibbs(x, bias, w_h, w_v, sweeps, generator)

    sweeps, times = _calibrated(run, chains, seconds_per_run, repeats, fixed_sweeps)
    with torch.no_grad():
        return Timing(sweeps, times, 0.0, float(model.energy(x).mean()))


def thrml_program(model: PottsModel):
    """The Potts model as a THRML FactorSamplingProgram with the two checkerboard blocks.

    Categorical factors carry log-potentials (-E terms): the bias factor b_i[x_i] and,
    for horizontal / vertical neighbour pairs, w * identity(4) over (x_i, x_j).
    """
    import jax.numpy as jnp
    from thrml import Block, BlockGibbsSpec, CategoricalNode, FactorSamplingProgram
    from thrml.models.discrete_ebm import CategoricalEBMFactor, CategoricalGibbsConditional

    nodes = [CategoricalNode() for _ in range(SITES)]
    colour = [(i // SIDE + i % SIDE) % 2 for i in range(SITES)]
    blocks = [Block([nodes[i] for i in range(SITES) if colour[i] == c]) for c in (0, 1)]
    bias, w_h, w_v = model.sampler_parameters()
    bias = np.asarray(bias[0].reshape(SITES, 4), dtype=np.float32)
    # bias factors split by colour so each factor's nodes sit in one block
    factors = [CategoricalEBMFactor([blocks[c]], jnp.asarray(bias[[i for i in range(SITES) if colour[i] == c]]))
               for c in (0, 1)]
    eye = np.eye(4, dtype=np.float32)
    for weight, pairs in ((w_h, [(i, i + 1) for i in range(SITES) if i % SIDE < SIDE - 1]),
                          (w_v, [(i, i + SIDE) for i in range(SITES - SIDE)])):
        left = Block([nodes[a] for a, _ in pairs])
        right = Block([nodes[b] for _, b in pairs])
        factors.append(CategoricalEBMFactor([left, right], jnp.asarray(np.broadcast_to(weight * eye, (len(pairs), 4, 4)))))
    spec = BlockGibbsSpec(blocks, [])
    samplers = [CategoricalGibbsConditional(4) for _ in blocks]
    program = FactorSamplingProgram(spec, samplers, factors, [])
    order = [[i for i in range(SITES) if colour[i] == c] for c in (0, 1)]
    return program, blocks, order


def bench_thrml(chains: int, seconds_per_run: float, repeats: int, seed: int,
                fixed_sweeps: int | None = None) -> Timing:
    import jax
    import jax.numpy as jnp
    from thrml import SamplingSchedule, sample_states

    model = bench_model(seed)
    program, blocks, order = thrml_program(model)
    rng = np.random.default_rng(seed)
    init = [jnp.asarray(rng.integers(0, 4, size=(chains, len(b.nodes)), dtype=np.uint8)) for b in blocks]
    keys = jax.random.split(jax.random.key(seed), chains)
    compiled: dict[int, Callable] = {}
    compile_seconds: dict[int, float] = {}
    last: list[Any] = []

    def runner(sweeps: int) -> Callable:
        if sweeps not in compiled:
            # n_samples = 1 runs exactly n_warmup sweeps and returns the final state
            schedule = SamplingSchedule(n_warmup=sweeps, n_samples=1, steps_per_sample=1)

            def one_chain(key, state):
                return sample_states(key, program, schedule, list(state), [], blocks)

            fn = jax.jit(jax.vmap(one_chain))
            started = time.perf_counter()
            jax.block_until_ready(fn(keys, init))  # compile + one run, outside the timings
            compile_seconds[sweeps] = time.perf_counter() - started
            compiled[sweeps] = fn
        return compiled[sweeps]

    def run(sweeps: int) -> None:
        out = runner(sweeps)(keys, init)
        jax.block_until_ready(out)
        last[:] = [out]

    sweeps, times = _calibrated(run, chains, seconds_per_run, repeats, fixed_sweeps, prepare=runner)
    states = [np.asarray(block_states)[:, 0] for block_states in last[0]]  # (chains, nodes) per block
    grid = np.zeros((chains, SITES), dtype=np.int64)
    for c in (0, 1):
        grid[:, order[c]] = states[c]
    with torch.no_grad():
        energy = float(model.energy(torch.from_numpy(grid.reshape(chains, SIDE, SIDE))).mean())
    return Timing(sweeps, times, compile_seconds[sweeps], energy)


def run_bench(implementation: str, chains: int, seconds_per_run: float, repeats: int, seed: int,
              device: str | torch.device = "cpu") -> dict[str, Any]:
    """One (implementation, chains) measurement as a table row's metrics."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if chains < 1 or repeats < 1 or seconds_per_run <= 0:
        raise ValueError("chains and repeats must be >= 1 and seconds_per_run > 0")
    if implementation == "block":
        timing = bench_block(chains, seconds_per_run, repeats, seed, "auto", device)
        backend = CheckerboardGibbs(SIDE, SIDE, device=device).backend
    elif implementation == "block_torch":
        timing = bench_block(chains, seconds_per_run, repeats, seed, "torch", device)
        backend = "torch"
    elif implementation == "sequential":
        timing = bench_sequential(chains, seconds_per_run, repeats, seed)
        backend = "torch"
    else:
        if not thrml_available():
            raise RuntimeError("thrml is not importable: pip install -e '.[thrml]'")
        timing = bench_thrml(chains, seconds_per_run, repeats, seed)
        backend = "jax"
    median = statistics.median(timing.seconds)
    flips = chains * SITES * timing.sweeps
    return {"implementation": implementation, "chains": chains, "sweeps": timing.sweeps,
            "flips_per_ns": flips / (median * 1e9), "median_seconds": median,
            "min_seconds": min(timing.seconds), "max_seconds": max(timing.seconds), "repeats": repeats,
            "compile_seconds": timing.compile_seconds, "mean_energy": timing.mean_energy,
            "energy_per_site": timing.mean_energy / SITES, "backend": backend,
            "torch_threads": torch.get_num_threads()}


@dataclass
class SamplerRunConfig:
    implementation: str
    chains: int
    seconds_per_run: float
    repeats: int
    seed: int


def run_job(config: Mapping[str, Any], output: str, run_id: str, device: str = "auto") -> dict:
    """Time one implementation at one chain count; write the run's metrics.json. The
    benchmark is single-process CPU work (a GPU is used only by the torch path when asked)."""
    cfg = build(SamplerRunConfig, config)
    implementation, chains = cfg.implementation, cfg.chains
    section = {"seed": cfg.seed, "seconds_per_run": cfg.seconds_per_run, "repeats": cfg.repeats}
    seed_everything(section["seed"])
    # the block sampler's kernel is a CPU kernel; on GPUs the tensor path runs there
    torch_device = pick_device(device) if implementation in ("block", "block_torch") else torch.device("cpu")
    started = time.perf_counter()
    metrics = run_bench(implementation, chains, section["seconds_per_run"], section["repeats"], section["seed"],
                        torch_device)
    log.info("%s chains=%d sweeps=%d: %.4f flips/ns", implementation, chains, metrics["sweeps"], metrics["flips_per_ns"])
    write_metrics(output, experiment=EXPERIMENT, run_id=run_id,
                  params={"implementation": implementation, "chains": chains}, seed=section["seed"],
                  metrics=metrics, wall_seconds=time.perf_counter() - started,
                  device=describe_device(torch_device),
                  provenance=provenance(n_train=0, n_val=0, n_test=0, data_sha256="none: random Potts model",
                                        n_params=SITES * 4 + 2))
    return metrics


def speedups(rows: list[Mapping[str, Any]], baseline: str = "thrml", ours: str = "block") -> dict[int, float]:
    """flips/ns of ``ours`` over ``baseline`` at each chain count both were measured at."""
    by = {(r["implementation"], int(r["chains"])): float(r["flips_per_ns"]) for r in rows}
    return {c: by[(ours, c)] / by[(baseline, c)] for (impl, c) in by if impl == baseline and (ours, c) in by
            and by[(baseline, c)] > 0 and not math.isnan(by[(baseline, c)])}
