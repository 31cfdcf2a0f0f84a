"""The potts_ebm THRML job: THRML's samples of one trained model, scored as ours are.

The same protocol as the evaluate job's block sampler (chain count, starts, sweeps and
checkpoints), run by THRML's block-Gibbs programs of the same models
(:mod:`rgbench.models.potts_thrml`) and scored by the same functions, so a table row
``sampler: thrml`` sits beside the row ``sampler: block`` of the same run.

The DBNs (``dbn``, ``dbn_cond``): THRML runs the top-level RBM's block Gibbs (the
program of :class:`rgbench.models.potts_thrml.DBNTopGraph`, the label block clamped or
free); the start (an up-pass from uniform-level noise) and the top-down pass at each
checkpoint are the model's own torch code, as in our sampler. The cost columns count
THRML's top-level sweeps only.

The denoising chains (``dtm``, ``dtm_cond``): THRML runs every step's block Gibbs (the
program of :class:`rgbench.models.potts_thrml.DTMStepGraph`: the step's RBM, the clamped
conditioning image and, for ``dtm_cond``, the clamped label), steps T..1 from uniform
noise, each step's last visible sample conditioning the next; one compiled program serves
every step and both passes. The cost columns count THRML's sweeps only (not the hand-over
between steps).

Under the paper preset's probe (a ``probe`` block in the ``thrml`` hand-off) THRML runs
every chain for the probe's few sweeps: its first call (tracing and XLA compilation) is
paid once whatever the sweeps, so only the calls after it are scaled to the real sweeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from rgbench.config import build
from rgbench.data.preprocess import load_levels
from rgbench.data.preprocess import CLASSES, LEVELS
from rgbench.evaluation.samples import SampleRun, ceiling_scores, relative_to_ceiling, save_sample_run
from rgbench.experiments.potts_ebm import (DBN_MODELS, DTM_MODELS, EXPERIMENT, SIDE, PottsRunConfig, ThrmlConfig,
                                           chain_labels, chain_start, checkpoints_for,
                                           fit_independent, memorisation_scores, run_provenance, score_chains,
                                           table_params)
from rgbench.models.pcd import RBM_MODELS, SHOWN_CHAINS, load_trained
from rgbench.probe import capped, measured, probe_record_path, split_probe
from rgbench.results import finite_or_none, write_metrics
from rgbench.runtime import get_logger, pick_device, seed_everything

log = get_logger("potts_ebm")


def thrml_job(config: Mapping[str, Any], thrml: Mapping[str, Any], mnist4: str, model_path: str,
              reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
              device: str = "auto") -> dict[str, Any]:
    """THRML's samples of one trained model from the evaluate job's starts, scored exactly
    as our sampler's are; writes the THRML row's metrics.json (``sampler: thrml``) and,
    under a probe, its probe record."""
    from rgbench.models.potts_thrml import configure_jax

    configure_jax(max(1, torch.get_num_threads()))  # before jax is first imported
    from rgbench.evaluation.reference import load_reference_classifier
    from rgbench.models.potts_thrml import ThrmlSampler, thrml_graph

    run_cfg = build(PottsRunConfig, config)
    thrml, probe = split_probe(thrml)
    started = time.perf_counter()
    seed_everything(run_cfg.seed)
    data = load_levels(mnist4, run_cfg.train_limit, run_cfg.test_limit)
    if run_cfg.model in DBN_MODELS:
        if probe is not None:
            raise ValueError("the DBN's THRML job has no probe yet: leave the DBNs out of the paper preset's models")
        return dbn_thrml_job(run_cfg, thrml, data, mnist4, model_path, reference_model, reference_stats, metrics_path,
                             samples_path, run_id, device, started)
    if run_cfg.model in DTM_MODELS:
        if probe is not None:
            raise ValueError("the DTM's THRML job has no probe yet: leave the DTMs out of the paper preset's models")
        return dtm_thrml_job(run_cfg, thrml, data, mnist4, model_path, reference_model, reference_stats, metrics_path,
                             samples_path, run_id, device, started)
    cfg = build(ThrmlConfig, thrml)
    kind, model, payload = load_trained(model_path)
    graph, params, to_images = thrml_graph(model)
    sampler = ThrmlSampler(graph.program, graph.blocks)
    generator = torch.Generator().manual_seed(20_000 + run_cfg.seed)
    labels = chain_labels(kind, cfg.samples)
    _, class_independent = fit_independent(data, run_cfg.smoothing)
    start = chain_start(kind, labels, cfg.samples, cfg.conditional_start, class_independent, generator).numpy()
    state = graph.to_state(start, np.random.default_rng(run_cfg.seed))
    clamp = graph.clamp(labels if len(labels) else None, cfg.samples)
    sweeps = cfg.sweeps(kind)
    per_call = sampler.sweeps_per_call
    sweeps_run = capped(probe, sweeps, per_call)  # a multiple of the sweeps per call, as the sampler needs
    checkpoints = checkpoints_for(cfg.checkpoints, sweeps_run)
    result = sampler.run(params, state, clamp, sweeps_run, 30_000 + run_cfg.seed, to_images, tuple(checkpoints))
    if probe is not None and sweeps_run > per_call:
        # the calls after the first (which compiles): per-sweep median times the sweeps they ran
        probe.add_block("sampling", result.sweep_seconds * (sweeps_run - per_call), sweeps - per_call,
                        sweeps_run - per_call)
    run = SampleRun(result.images, result.snapshots, labels, result.sweep_seconds, result.sweep_cpu_seconds,
                    start=start)
    if kind in RBM_MODELS:  # the mode view from THRML's last hidden state
        hidden = torch.from_numpy(np.asarray(result.final_state[0]).reshape(cfg.samples, -1).astype(np.float32))
        run.mode = model.visible_mode(hidden).view(-1, SIDE, SIDE).numpy()
    torch_device = pick_device(device)
    clf = load_reference_classifier(reference_model, device=torch_device)
    metrics, extra = score_chains(clf, run, checkpoints, checkpoints_for(cfg.checkpoints, sweeps), reference_stats,
                                  probe)
    with measured(probe, "ceiling"):
        n_ceiling = capped(probe, min(cfg.ceiling_images, len(data.test_x)), clf.batch_size)
        metrics.update(ceiling_scores(clf, data.test_x, data.test_y, n_ceiling, reference_stats))
    relative_to_ceiling(metrics)
    metrics.update(memorisation_scores(run.images, data, cfg.memorisation_images, probe))
    metrics["first_call_seconds"] = result.compile_seconds
    metrics["train_cpu_seconds"] = payload.get("train_cpu_seconds")
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    save_sample_run(samples_path, run, checkpoints, extra["digit_fraction_by_sweep"], SHOWN_CHAINS)
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=f"{run_id}_sampler-thrml",
                  params=table_params(run_cfg, "thrml"), seed=run_cfg.seed, metrics=metrics,
                  wall_seconds=time.perf_counter() - started, device="cpu (jax)", extra=extra,
                  provenance=run_provenance(payload, data, mnist4, model.parameter_count(), probe=probe is not None))
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device="cpu (jax)",
                    n_params=model.parameter_count(), cpu_bound=True)
    log.info("thrml %s seed %d: recognisable %.3f, first call %.1f s, %.4f s per sweep", kind, run_cfg.seed,
             metrics["recognisable_fraction"], result.compile_seconds, result.sweep_seconds)
    return metrics


def dbn_thrml_job(run_cfg: PottsRunConfig, sampling: Mapping[str, Any], data: Any, mnist4: str, model_path: str,
                  reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
                  device: str, started: float) -> dict[str, Any]:
    """THRML's samples of a DBN: the evaluate job's protocol (chains from uniform noise,
    scored at the budget and at the long run's sweeps), THRML running the top RBM."""
    from rgbench.evaluation.reference import load_reference_classifier
    from rgbench.experiments import potts_ebm_dbn
    from rgbench.experiments.potts_ebm_sampled import score_and_save, write_row
    from rgbench.models.potts_thrml import ThrmlSampler, dbn_top_graph

    cfg = build(potts_ebm_dbn.DBNSamplingConfig, sampling)
    kind = run_cfg.model
    model, payload = potts_ebm_dbn.load(model_path)
    if model.config.down_pass != "samples":
        raise ValueError("THRML's DBN runs pass the top RBM's visible states down (down_pass: samples)")
    clamped = kind == "dbn_cond"
    graph, params = dbn_top_graph(model, clamp_labels=clamped)
    sampler = ThrmlSampler(graph.program, graph.blocks)
    generator = torch.Generator().manual_seed(20_000 + run_cfg.seed)
    labels = potts_ebm_dbn.chain_labels(kind, cfg.samples)
    penultimate = model.start_state(cfg.samples, generator).numpy().astype(np.uint8)
    first_labels = labels if clamped else torch.randint(0, CLASSES, (cfg.samples,), generator=generator).numpy()
    state = graph.to_state(penultimate, first_labels, np.random.default_rng(run_cfg.seed))
    clamp = graph.clamp(labels if clamped else None, cfg.samples)
    checkpoints, long_sweeps = potts_ebm_dbn.sample_checkpoints(cfg.checkpoints, cfg.dbn_sample_sweeps,
                                                                cfg.long_sweeps_factor)

    def to_images(current: list[Any]) -> np.ndarray:  # one top-down pass of the chains' penultimate states
        return model.down(torch.from_numpy(graph.penultimate(current)), generator, "samples")

    result = sampler.run(params, state, clamp, long_sweeps, 30_000 + run_cfg.seed, to_images,
                         tuple(sorted({*checkpoints, long_sweeps})))
    snapshots = {**result.snapshots, long_sweeps: result.images}
    budget = checkpoints[-1]
    run = SampleRun(snapshots[budget], {c: snapshots[c] for c in checkpoints}, labels, result.sweep_seconds,
                    result.sweep_cpu_seconds)
    long = SampleRun(result.images, {long_sweeps: result.images}, labels, result.sweep_seconds,
                     result.sweep_cpu_seconds)
    clf = load_reference_classifier(reference_model, device=pick_device(device))
    metrics: dict[str, Any] = {}
    extra = score_and_save(clf, data, run, long, checkpoints, reference_stats, cfg.ceiling_images,
                           cfg.memorisation_images, samples_path, metrics)
    metrics["first_call_seconds"] = result.compile_seconds
    metrics["train_cpu_seconds"] = payload["train_cpu_seconds"]
    metrics = write_row(metrics_path, f"{run_id}_sampler-thrml", table_params(run_cfg, "thrml"), run_cfg.seed, metrics,
                        extra, started, "cpu (jax)", run_provenance(payload, data, mnist4, model.parameter_count()))
    log.info("thrml %s seed %d: recognisable %.3f at %d sweeps, %.3f at %d; first call %.1f s, %.4f s per sweep",
             kind, run_cfg.seed, metrics["recognisable_fraction"], budget, metrics["long_recognisable_fraction"],
             long_sweeps, result.compile_seconds, result.sweep_seconds)
    return metrics


@dataclass
class DTMThrmlPass:
    """One pass of THRML's DTM chains from uniform noise through every step."""

    snapshots: dict[int, np.ndarray]  # sweeps from the start -> (C, 28, 28) levels after each step
    call_seconds: list[float]  # wall seconds per sweep of every call (the compiling first call left out)
    call_cpu_seconds: list[float]
    first_call_seconds: float | None  # the pass's first call, when it compiled the program


def dtm_thrml_pass(sampler: Any, graph: Any, step_params: list[tuple], start: np.ndarray, labels: np.ndarray,
                   sweeps: int, seed: int, stream: int, rng: np.random.Generator, compiled: bool) -> DTMThrmlPass:
    """``sweeps`` THRML sweeps of each step's chain, steps T..1 (``step_params[i - 1]``: step
    i's :func:`rgbench.models.potts_thrml.dtm_step_params`), from x_T = ``start``, each
    step's chains starting from and clamped to the previous step's last visible sample
    (``DTM.sample``'s protocol). Each (``seed``, ``stream``, step) draws its own JAX keys;
    ``rng`` draws the hidden starts (never read). ``compiled``: the sampler has run before,
    so its first call here is timed like the rest."""
    x = np.asarray(start, dtype=np.uint8)
    height, width = x.shape[1:]
    snapshots: dict[int, np.ndarray] = {}
    walls: list[float] = []
    cpus: list[float] = []
    first = None
    for done, step in enumerate(range(len(step_params), 0, -1), start=1):
        key = int(np.random.SeedSequence([seed, stream, step]).generate_state(1)[0])
        state, clamp = graph.to_state(x, rng), graph.clamp(x, labels if len(labels) else None)
        result = sampler.run(step_params[step - 1], state, clamp, sweeps, key,
                             lambda current: graph.to_images(current, height, width))
        skip = 0 if compiled else 1  # the sampler's first call ever traces and compiles the program
        if not compiled:
            first, compiled = result.compile_seconds, True
        walls += result.call_seconds[skip:]
        cpus += result.call_cpu_seconds[skip:]
        x = result.images
        snapshots[done * sweeps] = x
    return DTMThrmlPass(snapshots, walls, cpus, first)


def dtm_thrml_job(run_cfg: PottsRunConfig, sampling: Mapping[str, Any], data: Any, mnist4: str, model_path: str,
                  reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
                  device: str, started: float) -> dict[str, Any]:
    """THRML's samples of a DTM: the evaluate job's protocol (chains from uniform noise
    through every step, the budget pass at the trained sweeps per step and a long pass
    from fresh noise at ``long_sweeps_factor`` times as many, snapshots after each step),
    THRML running every step's block Gibbs; scored and saved as the evaluate job's row."""
    from rgbench.evaluation.reference import load_reference_classifier
    from rgbench.experiments import potts_ebm_dtm
    from rgbench.experiments.potts_ebm_sampled import score_and_save, write_row
    from rgbench.models.dtm import DTM
    from rgbench.models.potts_thrml import ThrmlSampler, dtm_step_graph, dtm_step_params

    cfg = build(potts_ebm_dtm.DTMSamplingConfig, sampling)
    kind = run_cfg.model
    model, payload = DTM.load_payload(model_path)
    if model.conditional != (kind == "dtm_cond"):
        raise ValueError(f"{kind} samples a DTM {'with' if kind == 'dtm_cond' else 'without'} labels; "
                         f"{model_path} holds one {'with' if model.conditional else 'without'}")
    sweeps = model.config.sweeps
    couplings = model.coupling.detach().cpu().numpy()
    graph, _ = dtm_step_graph(model.rbms[0], float(couplings[0]))  # one graph (sizes only) for every step
    step_params = [dtm_step_params(rbm, float(j)) for rbm, j in zip(model.rbms, couplings)]
    sampler = ThrmlSampler(graph.program, graph.blocks)
    generator = torch.Generator().manual_seed(20_000 + run_cfg.seed)
    rng = np.random.default_rng(run_cfg.seed)
    labels = potts_ebm_dtm.chain_labels(kind, cfg.samples)
    passes = []
    for index, pass_sweeps in enumerate((sweeps, sweeps * cfg.long_sweeps_factor)):
        start = torch.randint(0, LEVELS, (cfg.samples, SIDE, SIDE), generator=generator, dtype=torch.uint8).numpy()
        passes.append(dtm_thrml_pass(sampler, graph, step_params, start, labels, pass_sweeps, 30_000 + run_cfg.seed,
                                     index, rng, compiled=index > 0))
    budget, long_pass = passes
    # per-sweep cost: the median over every warm call of both passes (one program, as the DBN's rows)
    sweep_seconds = float(np.median(budget.call_seconds + long_pass.call_seconds))
    sweep_cpu_seconds = float(np.median(budget.call_cpu_seconds + long_pass.call_cpu_seconds))
    checkpoints = sorted(budget.snapshots)
    long_sweeps = max(long_pass.snapshots)
    run = SampleRun(budget.snapshots[checkpoints[-1]], budget.snapshots, labels, sweep_seconds, sweep_cpu_seconds)
    long = SampleRun(long_pass.snapshots[long_sweeps], {long_sweeps: long_pass.snapshots[long_sweeps]}, labels,
                     sweep_seconds, sweep_cpu_seconds)
    metrics = potts_ebm_dtm.header_metrics(model, data, run_cfg.smoothing)
    clf = load_reference_classifier(reference_model, device=pick_device(device))
    extra = score_and_save(clf, data, run, long, checkpoints, reference_stats, cfg.ceiling_images,
                           cfg.memorisation_images, samples_path, metrics)
    metrics["first_call_seconds"] = budget.first_call_seconds
    metrics["train_cpu_seconds"] = payload["train_cpu_seconds"]
    metrics = write_row(metrics_path, f"{run_id}_sampler-thrml", table_params(run_cfg, "thrml"), run_cfg.seed, metrics,
                        extra, started, "cpu (jax)", run_provenance(payload, data, mnist4, model.parameter_count()))
    log.info("thrml %s seed %d: recognisable %.3f at %d sweeps, %.3f at %d; first call %.1f s, %.4f s per sweep",
             kind, run_cfg.seed, metrics["recognisable_fraction"], checkpoints[-1],
             metrics["long_recognisable_fraction"], long_sweeps, budget.first_call_seconds, sweep_seconds)
    return metrics
