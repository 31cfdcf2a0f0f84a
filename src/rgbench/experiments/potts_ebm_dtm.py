"""The potts_ebm jobs of the denoising chain of conditional RBMs (:mod:`rgbench.models.dtm`).

Two rows, two trained models: ``dtm`` (unconditional) and ``dtm_cond`` (every step's RBM
has the label units, clamped to the chain's digit; chains clamped to 0..9 in turn).

Evaluation, beside the other EBMs' protocol (same chains, same scorer, same ceiling):

- every chain starts from uniform noise x_T and runs the trained ``sweeps`` per step
  through all T steps (the budget: T x sweeps sweeps, the table's quality and cost
  columns); the chains are also scored after each step (``steps_to_digit`` counts sweeps
  from the start);
- a second pass from fresh noise runs ``long_sweeps_factor`` times as many sweeps per step
  (columns ``long_*``): does each step's short chain carry the quality, or its equilibrium?
  The chain was trained for its short runs, so longer chains are not expected to help;
- the cost of a sample: the pass's CPU seconds over its sweeps;
- no likelihood: each step's conditional normaliser (a sum over 4^784 images per
  conditioning image) is not estimated, so ``likelihood_method: none`` with the exact
  independent-pixel baselines beside the row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from rgbench.config import build
from rgbench.data.preprocess import CLASSES, LevelData, load_levels
from rgbench.evaluation.energy import RaplMeter
from rgbench.evaluation.samples import SampleRun
from rgbench.experiments.potts_ebm import (DTM_MODELS, baseline_metrics, fit_independent, run_provenance,
                                           table_params)
from rgbench.experiments.potts_ebm_sampled import add_training_record, save_trained, score_and_save, write_row
from rgbench.models.dtm import DTM, DTMConfig, train_dtm
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything

log = get_logger("potts_ebm")


@dataclass
class DTMSamplingConfig:
    """How a DTM row is sampled and scored: the evaluate job's (config ``analysis``) or the
    THRML job's (``thrml.samples`` chains) hand-off."""

    seed: int
    samples: int  # chains, scored at the budget and, from fresh noise, at the long run's sweeps
    ceiling_images: int
    memorisation_images: int
    long_sweeps_factor: int  # the long run's sweeps per step, in multiples of the trained ones

    def __post_init__(self) -> None:
        if self.samples < 1 or self.long_sweeps_factor < 1:
            raise ValueError(f"samples and long_sweeps_factor must be >= 1: {self}")


def dtm_config(kind: str, training: Mapping[str, Any], smoothing: float) -> DTMConfig:
    """The run's ``dtm`` block as the model's config; ``dtm_cond`` adds the label units."""
    if kind not in DTM_MODELS:
        raise ValueError(f"kind must be one of {DTM_MODELS}, got {kind!r}")
    return DTMConfig(**{**training, "classes": CLASSES if kind == "dtm_cond" else 0, "smoothing": smoothing})


def train(cfg: Any, data: LevelData, model_path: str, epochs_path: str) -> dict[str, Any]:
    """Every step's RBM of one DTM (``cfg``: the run's PottsRunConfig); the model file holds
    the DTM's payload plus the run's training record, as the other potts_ebm models' do."""
    began = time.perf_counter()
    model = train_dtm(dtm_config(cfg.model, cfg.training, cfg.smoothing), data, cfg.seed, log=log.info,
                      checkpoint_path=Path(model_path).parent / "checkpoint.pt")
    payload = save_trained(model, cfg, data, model_path, epochs_path, began, "step")
    log.info("%s seed %d: %d step-epochs in %.1f s", cfg.model, cfg.seed, len(payload["history"]),
             payload["train_seconds"])
    return payload


def chain_labels(kind: str, n: int) -> np.ndarray:
    """Clamped digits 0..9 in turn (``dtm_cond``), or none (``dtm``)."""
    if kind not in DTM_MODELS:
        raise ValueError(f"kind must be one of {DTM_MODELS}, got {kind!r}")
    return np.arange(n) % CLASSES if kind == "dtm_cond" else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def sample_pass(model: DTM, labels: np.ndarray, n: int, sweeps: int, generator: torch.Generator,
                ) -> tuple[SampleRun, list[int]]:
    """``n`` chains from uniform noise through every step at ``sweeps`` sweeps per step: the
    run (snapshots after each step, keyed by sweeps from the start) and those keys."""
    wall, cpu = time.perf_counter(), time.process_time()
    with RaplMeter() as meter:
        snaps = model.sample(n, labels if len(labels) else None, sweeps, generator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = max(snaps)
    joules = None if meter.joules is None else meter.joules / n
    return SampleRun(snaps[total], snaps, labels, wall / total, cpu / total, energy_joules_per_sample=joules), \
        sorted(snaps)


def sample_runs(model: DTM, kind: str, n: int, factor: int, generator: torch.Generator,
                ) -> tuple[SampleRun, SampleRun, list[int]]:
    """(the budget's run, the long run, the budget's checkpoints: sweeps after each step)."""
    labels = chain_labels(kind, n)
    run, checkpoints = sample_pass(model, labels, n, model.config.sweeps, generator)
    long, _ = sample_pass(model, labels, n, model.config.sweeps * factor, generator)
    long = SampleRun(long.images, {max(long.snapshots): long.images}, labels, long.sweep_seconds,
                     long.sweep_cpu_seconds, energy_joules_per_sample=long.energy_joules_per_sample)
    return run, long, checkpoints


def header_metrics(model: DTM, data: LevelData, smoothing: float) -> dict[str, Any]:
    """What a DTM row says before its samples' scores (our sampler's and THRML's alike): the
    exact independent-pixel baselines, no likelihood, and the chain's steps and sweeps."""
    independent, class_independent = fit_independent(data, smoothing)
    return {**baseline_metrics(model.conditional, data, independent, class_independent), "test_nll_nats": None,
            "likelihood_method": "none", "dtm_steps": model.config.steps, "sweeps_per_step": model.config.sweeps}


def evaluate(cfg: Any, sampling: Mapping[str, Any], mnist4: str, model_path: str, reference_model: str,
             reference_stats: str, metrics_path: str, samples_path: str, run_id: str, device: str) -> dict[str, Any]:
    """The DTM row's evaluate job (``cfg``: PottsRunConfig; ``sampling``: its
    DTMSamplingConfig hand-off), with the other potts_ebm rows' baselines and memorisation check."""
    from rgbench.evaluation.reference import load_reference_classifier

    acfg = build(DTMSamplingConfig, sampling)
    seed_everything(acfg.seed)
    generator = torch.Generator().manual_seed(10_000 + acfg.seed)
    started = time.perf_counter()
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    model, payload = DTM.load_payload(model_path)
    run, long, checkpoints = sample_runs(model, cfg.model, acfg.samples, acfg.long_sweeps_factor, generator)
    metrics = header_metrics(model, data, cfg.smoothing)
    torch_device = pick_device(device)
    clf = load_reference_classifier(reference_model, device=torch_device)
    extra = score_and_save(clf, data, run, long, checkpoints, reference_stats, acfg.ceiling_images,
                           acfg.memorisation_images, samples_path, metrics)
    add_training_record(metrics, extra, payload)
    metrics = write_row(metrics_path, run_id, table_params(cfg, "block"), cfg.seed, metrics, extra, started,
                        describe_device(torch_device), run_provenance(payload, data, mnist4, model.parameter_count()))
    log.info("%s seed %d: recognisable %.3f (%.3f of the ceiling) at %d sweeps, %.3f at %d", cfg.model, cfg.seed,
             metrics["recognisable_fraction"], metrics.get("recognisable_fraction_vs_ceiling") or float("nan"),
             checkpoints[-1], metrics["long_recognisable_fraction"], max(long.snapshots))
    return metrics
