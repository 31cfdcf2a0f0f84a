"""The potts_ebm jobs of the label-conditional deep belief net (:mod:`rgbench.models.dbn`).

One DBN is trained per seed (run ``dbn_cond``: the label units are part of the model) and
sampled twice: ``dbn_cond`` clamps each chain's label to 0..9 in turn, ``dbn`` leaves the
label units free (the paper's unconditional samples), so the two rows share a trained
model as a THRML row shares its block row's.

Evaluation, beside the other EBMs' protocol (same chains, same scorer, same ceiling):

- every chain starts from uniform noise (an up-pass from a uniform-level image, the
  DBN's ``sample_start: pixels``) and runs ``dbn_sample_sweeps`` top-level block-Gibbs
  sweeps (the budget: the table's quality and cost columns), then on to
  ``long_sweeps_factor`` times that many (columns ``long_*``: is the quality an
  equilibrium property or a short-chain artefact?); at every checkpoint the chains are
  passed down once to pixels and scored;
- the cost of a sample: the sampling run's CPU seconds over its top-level sweeps (the
  up-pass start and the down-passes at the checkpoints included, amortised per sweep);
- no likelihood: a DBN's log-likelihood needs the top RBM's partition function (estimated
  per label for the class prior below) with the directed layers' variational bound, which
  the pipeline does not compute; the row says
  ``likelihood_method: none`` and keeps the exact independent-pixel baseline beside it;
- the top RBM's label posterior classifies the test set (``test_label_accuracy``), a
  diagnostic of how strongly the labels are tied to the features.
- the label-free row (``dbn``) carries the class prior its chains reach at equilibrium
  (the train job's AIS of the top RBM's per-label partition functions,
  ``equilibrium_max_class_prior`` / ``equilibrium_min_class_prior``): class coverage at the
  budget that the equilibrium does not share is a property of chains from noise, not of
  the model.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from rgbench.config import build
from rgbench.data.preprocess import CLASSES, LevelData, load_levels
from rgbench.evaluation.energy import RaplMeter
from rgbench.experiments.potts_ebm import (DBN_MODELS, baseline_metrics, fit_independent,
                                           run_provenance, table_params)
from rgbench.experiments.potts_ebm_sampled import add_training_record, save_trained, score_and_save, write_row
from rgbench.evaluation.samples import SampleRun
from rgbench.models.dbn import DBN, FEATURE_BATCH, DBNConfig, train_dbn
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything

log = get_logger("potts_ebm")



@dataclass
class DBNSamplingConfig:
    """How a DBN row is sampled and scored: the evaluate job's (config ``analysis``: its
    chains) or the THRML job's (``thrml.samples`` chains) hand-off. The other EBMs'
    likelihood and mixing settings do not apply, so they are not handed over."""

    seed: int
    samples: int  # chains, each scored once at the budget and once at the long run's end
    checkpoints: list[int]  # sweeps (below the budget) at which the chains are also scored
    ceiling_images: int
    memorisation_images: int
    dbn_sample_sweeps: int  # the budget: top-level sweeps per sample
    long_sweeps_factor: int  # the same chains are also scored at this many times the budget


def dbn_config(training: Mapping[str, Any], smoothing: float) -> DBNConfig:
    """The run's ``dbn`` block as the model's config."""
    return DBNConfig(**{**training, "smoothing": smoothing})


def train(cfg: Any, data: LevelData, model_path: str, epochs_path: str) -> dict[str, Any]:
    """Greedy PCD training of one DBN (``cfg``: the run's PottsRunConfig); the model file
    holds the DBN's own payload plus the run's training record as the other potts_ebm
    models' do. ``epochs_path`` gets the per-epoch free-energy gaps of every layer."""
    began = time.perf_counter()
    # per-layer checkpoint beside the model (not an output, so a killed job resumes from it)
    model = train_dbn(dbn_config(cfg.training, cfg.smoothing), data, cfg.seed, log=log.info,
                      checkpoint_path=Path(model_path).parent / "checkpoint.pt")
    payload = save_trained(model, cfg, data, model_path, epochs_path, began, "layer")
    log.info("dbn seed %d: %d layer-epochs in %.1f s, validation label accuracy %.4f", cfg.seed,
             len(payload["history"]), payload["train_seconds"], model.record.get("val_label_accuracy", float("nan")))
    return payload


def load(model_path: str) -> tuple[DBN, dict[str, Any]]:
    """The trained DBN and its whole payload (the train job's record included)."""
    return DBN.load_payload(model_path)


def chain_labels(kind: str, n: int) -> np.ndarray:
    """Clamped digits 0..9 in turn (``dbn_cond``), or none (``dbn``: the labels are free)."""
    if kind not in DBN_MODELS:
        raise ValueError(f"kind must be one of {DBN_MODELS}, got {kind!r}")
    return np.arange(n) % CLASSES if kind == "dbn_cond" else np.zeros(0, dtype=np.int64)


def sample_checkpoints(checkpoints: list[int], budget: int, factor: int) -> tuple[list[int], int]:
    """(the configured checkpoints below the budget and the budget itself, the long run's sweeps)."""
    if budget < 1 or factor < 1:
        raise ValueError(f"dbn_sample_sweeps and long_sweeps_factor must be >= 1, got {budget}, {factor}")
    return [c for c in checkpoints if c < budget] + [budget], budget * factor


@torch.no_grad()
def sample_run(model: DBN, kind: str, n: int, checkpoints: list[int], long_sweeps: int,
               generator: torch.Generator) -> tuple[SampleRun, SampleRun]:
    """(the budget's run: scored at ``checkpoints``, the last of which is the budget; the
    long run: the same chains continued to ``long_sweeps``). One sampling pass serves
    both: the chains are passed down at every checkpoint."""
    labels = chain_labels(kind, n)
    wall, cpu = time.perf_counter(), time.process_time()
    with RaplMeter() as meter:
        snaps = model.sample(n, labels if len(labels) else None, long_sweeps, generator,
                             snapshots=sorted({*checkpoints, long_sweeps}))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    budget = checkpoints[-1]
    per_sweep_wall, per_sweep_cpu = wall / long_sweeps, cpu / long_sweeps
    # RAPL counted the whole pass: the budget's share of it by sweeps
    joules = None if meter.joules is None else meter.joules / n * budget / long_sweeps
    run = SampleRun(snaps[budget], {c: snaps[c] for c in checkpoints}, labels, per_sweep_wall, per_sweep_cpu,
                    energy_joules_per_sample=joules)
    long = SampleRun(snaps[long_sweeps], {long_sweeps: snaps[long_sweeps]}, labels, per_sweep_wall, per_sweep_cpu)
    return run, long


def add_equilibrium_prior(metrics: dict[str, Any], extra: dict[str, Any], prior: Mapping[str, Any] | None) -> None:
    """The label-free row's equilibrium class prior (the train job's AIS, in the model's
    record) beside the class shares its chains reach at the budget: the share of the most and
    the least probable digit, and the doubling check's shift (nats of log p(y)). ``None``:
    not estimated (``prior_chains: 0``), the columns stay empty."""
    if prior is None:
        metrics.update(equilibrium_max_class_prior=None, equilibrium_min_class_prior=None,
                       equilibrium_prior_doubling_shift=None)
        return
    metrics["equilibrium_max_class_prior"] = float(max(prior["class_prior"]))
    metrics["equilibrium_min_class_prior"] = float(min(prior["class_prior"]))
    metrics["equilibrium_prior_doubling_shift"] = float(prior["doubling_shift"])
    extra["equilibrium_label_prior"] = dict(prior)


def label_accuracy(model: DBN, data: LevelData) -> float:
    """Share of test images whose top-RBM label posterior's argmax is their digit."""
    x = torch.from_numpy(np.ascontiguousarray(data.test_x))
    predicted = torch.cat([model.classify(x[i:i + FEATURE_BATCH]) for i in range(0, len(x), FEATURE_BATCH)])
    return float((predicted.numpy() == np.asarray(data.test_y)).mean())


def evaluate(cfg: Any, sampling: Mapping[str, Any], mnist4: str, model_path: str, reference_model: str,
             reference_stats: str, metrics_path: str, samples_path: str, run_id: str, device: str) -> dict[str, Any]:
    """The DBN row's evaluate job (``cfg``: PottsRunConfig; ``sampling``: its
    DBNSamplingConfig hand-off), with the other potts_ebm rows' exact baselines and
    memorisation check."""
    from rgbench.evaluation.reference import load_reference_classifier

    acfg = build(DBNSamplingConfig, sampling)
    seed_everything(acfg.seed)
    generator = torch.Generator().manual_seed(10_000 + acfg.seed)
    started = time.perf_counter()
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    model, payload = load(model_path)
    independent, class_independent = fit_independent(data, cfg.smoothing)
    checkpoints, long_sweeps = sample_checkpoints(acfg.checkpoints, acfg.dbn_sample_sweeps, acfg.long_sweeps_factor)
    run, long = sample_run(model, cfg.model, acfg.samples, checkpoints, long_sweeps, generator)
    baseline = baseline_metrics(cfg.model == "dbn_cond", data, independent, class_independent)
    metrics: dict[str, Any] = {**baseline, "test_nll_nats": None, "likelihood_method": "none",
                               "test_label_accuracy": label_accuracy(model, data)}
    metrics["analysis_seconds"] = time.perf_counter() - started
    torch_device = pick_device(device)
    clf = load_reference_classifier(reference_model, device=torch_device)
    extra = score_and_save(clf, data, run, long, checkpoints, reference_stats, acfg.ceiling_images,
                           acfg.memorisation_images, samples_path, metrics)
    add_training_record(metrics, extra, payload)
    metrics["val_label_accuracy"] = payload["record"].get("val_label_accuracy")
    if cfg.model == "dbn":
        add_equilibrium_prior(metrics, extra, payload["record"].get("equilibrium_label_prior"))
    metrics = write_row(metrics_path, run_id, table_params(cfg, "block"), cfg.seed, metrics, extra, started,
                        describe_device(torch_device), run_provenance(payload, data, mnist4, model.parameter_count()))
    log.info("%s seed %d: recognisable %.3f (%.3f of the ceiling) at %d sweeps, %.3f at %d", cfg.model, cfg.seed,
             metrics["recognisable_fraction"], metrics.get("recognisable_fraction_vs_ceiling") or float("nan"),
             checkpoints[-1], metrics["long_recognisable_fraction"], long_sweeps)
    return metrics
