"""Scoring shared by the potts_ebm rows that are sampled and scored but not annealed: the
deep belief net (:mod:`rgbench.experiments.potts_ebm_dbn`) and the denoising chain
(:mod:`rgbench.experiments.potts_ebm_dtm`), by our sampler or by THRML.

Each such row is scored twice from uniform noise: at its budget (the table's quality and
cost columns) and at ``long_sweeps_factor`` times as many sweeps (columns ``long_*``), so a
reader sees whether the quality is an equilibrium property or a short-chain artefact.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from rgbench.data.preprocess import LevelData
from rgbench.io import save_npz_atomic
from rgbench.results import finite_or_none, write_metrics
from rgbench.evaluation.samples import SampleRun, ceiling_scores, relative_to_ceiling, save_sample_run, score_samples
from rgbench.experiments.potts_ebm import EXPERIMENT, memorisation_scores
from rgbench.models.pcd import SHOWN_CHAINS

# the long run's columns beside the budget's
LONG_COLUMNS = ("long_fid", "long_recognisable_fraction", "long_class_entropy", "long_min_class_share",
                "long_conditional_recognition", "long_sample_sweeps", "long_cpu_seconds_per_1000_samples")


def score(clf: Any, run: SampleRun, long: SampleRun, checkpoints: list[int], reference_stats: str,
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The budget's scores (the table's columns) and the long run's, prefixed ``long_``."""
    metrics, extra = score_samples(clf, run, run.labels, checkpoints, reference_stats)
    long_sweeps = max(long.snapshots)
    long_metrics, long_extra = score_samples(clf, long, long.labels, [long_sweeps], reference_stats, prefix="long_")
    metrics.update({k: v for k, v in long_metrics.items() if k in LONG_COLUMNS})
    extra["long_class_histogram"] = long_extra["class_histogram"]
    extra["digit_fraction_by_sweep"] = {**extra["digit_fraction_by_sweep"], **long_extra["digit_fraction_by_sweep"]}
    return metrics, extra


def scored_row(clf: Any, data: LevelData, run: SampleRun, long: SampleRun, checkpoints: list[int],
               reference_stats: str, ceiling_images: int, memorisation_images: int,
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`score`, the ceiling (real test images through the same 4 levels) with the
    scores relative to it, and the memorisation check of the budget's samples."""
    metrics, extra = score(clf, run, long, checkpoints, reference_stats)
    metrics.update(ceiling_scores(clf, data.test_x, data.test_y, min(ceiling_images, len(data.test_x)),
                                  reference_stats))
    relative_to_ceiling(metrics)
    metrics.update(memorisation_scores(run.images, data, memorisation_images, None))
    return metrics, extra


def save_runs(samples_path: str, run: SampleRun, long: SampleRun, checkpoints: list[int],
              extra: dict[str, Any]) -> None:
    """The samples file of both runs: the budget's snapshots, then the long run's end."""
    save_sample_run(samples_path, SampleRun(run.images, {**run.snapshots, **long.snapshots}, run.labels,
                                            run.sweep_seconds, run.sweep_cpu_seconds),
                    checkpoints + [max(long.snapshots)], extra["digit_fraction_by_sweep"], SHOWN_CHAINS)


def score_and_save(clf: Any, data: LevelData, run: SampleRun, long: SampleRun, checkpoints: list[int],
                   reference_stats: str, ceiling_images: int, memorisation_images: int, samples_path: str,
                   metrics: dict[str, Any]) -> dict[str, Any]:
    """:func:`scored_row` into ``metrics`` (updated in place) and :func:`save_runs`; returns
    the row's extra (histograms, digit fractions) for metrics.json."""
    scores, extra = scored_row(clf, data, run, long, checkpoints, reference_stats, ceiling_images,
                               memorisation_images)
    metrics.update(scores)
    save_runs(samples_path, run, long, checkpoints, extra)
    return extra


def add_training_record(metrics: dict[str, Any], extra: dict[str, Any], payload: dict[str, Any]) -> None:
    """A trained DBN's or DTM's record (``save_trained``'s payload) into its row, in place."""
    metrics["train_seconds"] = payload["train_seconds"]
    metrics["train_cpu_seconds"] = payload["train_cpu_seconds"]
    metrics["diverged"] = bool(payload["diverged"])
    extra["history"] = payload["history"]


def save_trained(model: Any, cfg: Any, data: LevelData, model_path: str, epochs_path: str, began: float,
                 unit: str) -> dict[str, Any]:
    """Save a trained DBN or DTM (``model.save``) with the run's training record, as the
    other potts_ebm models' files carry it; ``epochs_path`` gets the per-epoch free-energy
    gaps and CPU-seconds of every ``unit`` (``layer`` or ``step``). ``began``: the job's
    perf_counter at the start of training."""
    history = model.record["history"]
    updates_per_epoch = len(data.train_x) // model.config.batch_size
    payload = model.save(model_path, run=asdict(cfg), diverged=not all(np.isfinite(h["gap"]) for h in history),
                         history=history, train_seconds=time.perf_counter() - began,
                         train_cpu_seconds=model.record["train_cpu_seconds"], n_train=len(data.train_x),
                         n_val=len(data.val_x), steps_run=updates_per_epoch * len(history), probe=False)
    save_npz_atomic(epochs_path, **{unit: np.array([h[unit] for h in history], dtype=np.int64)},
                    epoch_gap=np.array([h["gap"] for h in history]),
                    epoch_cpu_seconds=np.array([h["cpu_seconds"] for h in history]))
    return payload


def write_row(metrics_path: str, run_id: str, params: dict[str, Any], seed: int, metrics: dict[str, Any],
              extra: dict[str, Any], started: float, device: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """A sampled row's metrics.json (non-finite floats as null); returns the metrics written.
    ``started``: the job's perf_counter at its start."""
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=run_id, params=params, seed=seed, metrics=metrics,
                  wall_seconds=time.perf_counter() - started, device=device, extra=extra, provenance=provenance)
    return metrics
