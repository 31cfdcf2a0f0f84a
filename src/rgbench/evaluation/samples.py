"""Scores of a generator's samples of 4-level images, by the reference classifier.

Any sampler that records a :class:`SampleRun` (its chains' final images, snapshots at
checkpoint sweeps, intended labels, timing) is scored the same way, whatever model made
the samples: FID, recognisable fraction, class entropy, inception score, conditional
recognition, steps to a digit, and the ceiling (real test images rendered through the same
levels), to which quality is then expressed as a share. Images are level images; they are
drawn as grey by :func:`rgbench.data.preprocess.levels_to_grey`, as the figures draw them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from rgbench.data.preprocess import levels_to_grey
from rgbench.evaluation.quality import conditional_recognition, sample_quality
from rgbench.io import save_npz_atomic

RECOGNISED = 0.9  # the reference classifier's confidence that makes a sample a digit (quality.py)


@dataclass
class SampleRun:
    """What one sampler's chains produced."""

    images: np.ndarray  # (N, H, W) levels after the last sweep
    snapshots: dict[int, np.ndarray]  # sweep -> (N, H, W)
    labels: np.ndarray  # intended classes (empty for unconditional models)
    sweep_seconds: float  # wall seconds per sweep of all chains
    sweep_cpu_seconds: float
    mode: np.ndarray | None = None  # e.g. RBMs: most probable image given the last hidden state
    start: np.ndarray | None = None  # (N, H, W) levels the chains started from
    # RAPL joules per sample of the whole run (None: no counter readable, see evaluation.energy)
    energy_joules_per_sample: float | None = None

    def first(self, n: int) -> "SampleRun":
        """The same run restricted to its first ``n`` chains (what a probe's scoring keeps)."""
        if n >= len(self.images):
            return self
        return SampleRun(self.images[:n], {sweep: images[:n] for sweep, images in self.snapshots.items()},
                         self.labels[:n], self.sweep_seconds, self.sweep_cpu_seconds,
                         None if self.mode is None else self.mode[:n], None if self.start is None else self.start[:n],
                         self.energy_joules_per_sample)


def steps_to_digit(recognised: np.ndarray, checkpoints: Sequence[int]) -> tuple[float, np.ndarray]:
    """From (checkpoints, N) booleans: each chain's first checkpoint sweep at which it is
    recognised (inf if never) and their median (inf when most chains never are)."""
    recognised = np.asarray(recognised, dtype=bool)
    first = np.full(recognised.shape[1], np.inf)
    for row, sweep in zip(recognised[::-1], list(checkpoints)[::-1]):
        first[row] = sweep
    return float(np.median(first)), first


def score_samples(clf: Any, run: SampleRun, labels: np.ndarray, checkpoints: Sequence[int],
                  reference_stats: str | os.PathLike, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference classifier's view of one sampler's chains: FID, recognisable
    fraction, class entropy and inception score of the final samples, conditional
    recognition (when ``labels`` are given), steps to a digit from the snapshots (a chain
    is a digit once the classifier gives it > 0.9, and with labels its intended class),
    the share of starting images that already are digits (and, with labels, their
    conditional recognition), and the same scores of the run's mode view when it has one.
    Returns (metrics, extra) with metric names prefixed by ``prefix``."""
    quality = sample_quality(clf, levels_to_grey(run.images), reference_stats)
    out = {"fid": quality["fid"], "recognisable_fraction": quality["recognisable_fraction"],
           "class_entropy": quality["class_entropy"], "inception_score": quality["inception_score"],
           "n_samples": quality["n_samples"]}
    extra: dict[str, Any] = {"class_histogram": quality["class_histogram"]}
    # class coverage: a generator that draws only easy digits has a small smallest share
    out["min_class_share"] = float(np.min(quality["class_histogram"]))
    if len(labels):
        out["conditional_recognition"] = conditional_recognition(clf, levels_to_grey(run.images), labels)

    def is_digit(images: np.ndarray) -> np.ndarray:
        probs = clf.predict_proba(levels_to_grey(images))
        ok = probs.max(1) > RECOGNISED
        return ok & (probs.argmax(1) == labels) if len(labels) else ok

    if run.start is not None:  # what the chains owe to their start
        out["start_digit_fraction"] = float(is_digit(run.start).mean())
        if len(labels):
            out["start_conditional_recognition"] = conditional_recognition(clf, levels_to_grey(run.start), labels)
    recognised = [is_digit(run.snapshots[sweep]) for sweep in checkpoints]
    median, first = steps_to_digit(np.asarray(recognised), checkpoints)
    out["steps_to_digit"] = median
    out["digit_fraction"] = float(np.isfinite(first).mean())
    out["seconds_to_digit"] = median * run.sweep_seconds
    out["cpu_seconds_to_digit"] = median * run.sweep_cpu_seconds
    out["sweep_seconds"] = run.sweep_seconds
    out["chain_sweeps_per_cpu_second"] = (len(run.images) / run.sweep_cpu_seconds if run.sweep_cpu_seconds
                                          else float("nan"))
    # what the scored samples cost: every chain ran the last checkpoint's sweeps (an
    # ancestral sampler's whole pass is its one "sweep")
    sweeps = max(checkpoints)
    out["sample_sweeps"] = sweeps
    out["wall_seconds_per_1000_samples"] = 1000.0 * sweeps * run.sweep_seconds / len(run.images)
    out["cpu_seconds_per_1000_samples"] = 1000.0 * sweeps * run.sweep_cpu_seconds / len(run.images)
    recognisable = out["recognisable_fraction"]
    out["cpu_seconds_per_recognisable_digit"] = (out["cpu_seconds_per_1000_samples"] / 1000.0 / recognisable
                                                 if recognisable else float("nan"))
    if run.energy_joules_per_sample is not None:
        out["sampling_energy_joules_per_sample"] = run.energy_joules_per_sample
    extra["digit_fraction_by_sweep"] = {int(s): float(r.mean()) for s, r in zip(checkpoints, recognised)}
    if run.mode is not None:
        mode = sample_quality(clf, levels_to_grey(run.mode), reference_stats)
        out.update(fid_mode=mode["fid"], recognisable_fraction_mode=mode["recognisable_fraction"],
                   class_entropy_mode=mode["class_entropy"])
        if len(labels):
            out["conditional_recognition_mode"] = conditional_recognition(clf, levels_to_grey(run.mode), labels)
    return {prefix + k: v for k, v in out.items()}, extra


def ceiling_scores(clf: Any, images: np.ndarray, labels: np.ndarray, n: int,
                   reference_stats: str | os.PathLike) -> dict[str, Any]:
    """The same scores of the first ``n`` real (level) images and their labels, rendered
    exactly as samples are: the ceiling a generator of these levels can reach."""
    n = min(n, len(images))
    grey = levels_to_grey(images[:n])
    quality = sample_quality(clf, grey, reference_stats)
    return {"ceiling_fid": quality["fid"], "ceiling_recognisable_fraction": quality["recognisable_fraction"],
            "ceiling_class_entropy": quality["class_entropy"],
            "ceiling_conditional_recognition": conditional_recognition(clf, grey, labels[:n])}


def relative_to_ceiling(metrics: dict[str, Any]) -> None:
    """Quality as a share of the ceiling's (the targets' measure), added in place."""
    ceiling = metrics["ceiling_recognisable_fraction"]
    for key in ("recognisable_fraction", "recognisable_fraction_mode", "long_recognisable_fraction"):
        if key in metrics and ceiling:
            metrics[key + "_vs_ceiling"] = metrics[key] / ceiling


def save_sample_run(path: str | os.PathLike, run: SampleRun, checkpoints: Sequence[int],
                    digit_fraction_by_sweep: Mapping[int, float], shown: int) -> None:
    """The arrays the figures draw: final samples, labels, the mode view (empty when none),
    the first ``shown`` chains at every checkpoint and the share of digits there."""
    empty = np.zeros((0, *run.images.shape[1:]), np.uint8)
    save_npz_atomic(path, samples=run.images, labels=run.labels, mode=run.mode if run.mode is not None else empty,
                    checkpoints=np.asarray(checkpoints),
                    snapshots=np.stack([run.snapshots[c][:shown] for c in checkpoints]),
                    digit_fraction=np.asarray(list(digit_fraction_by_sweep.values())))
