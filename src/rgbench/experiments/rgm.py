"""RGM jobs: fit a model (SVD quantiser, structure learning, active learning), evaluate it
under one protocol, the ablation (one variant per job, then the table), samples for the
figures. Scripts in scripts/rgm_*.py call these; each builds its run dataclass from the
rule's config hand-off.

Data (training images in their original order, as the demo streams them):

- stream: training images ``stream_start + 1 .. stream_start + stream_size``; the exemplars
  are the first ``exemplars_per_class`` images of each digit in it;
- paper slice: training images ``slice_start + 1 .. slice_start + slice_size``;
- validation: the rows of the project's seeded validation split (``val_index``) outside
  the stream and the slice, the first ``val_size`` of them in index order. Every choice
  of a default is made on it (the ablation); the official test set decides nothing.

Fitted models (``fit``: the names of config ``rgm.fits``, each a :class:`FitRecipe`): the
images the SVD and bins are fit on (``stream`` or ``stream+slice``, as the demo) and the
recipe, overrides of the model settings in the ablation's form. ``official_test`` (stream)
and ``paper_slice`` (stream + slice) use our validation-chosen defaults;
``paper_slice_demo`` (stream + slice) the demo's recipe exactly, so that the paper's claims
are judged on the paper's method.

Protocols (``protocol``: one evaluation run, the ``protocol`` column of tables/rgm.csv;
:data:`PROTOCOL_FITS` names the model, :data:`PROTOCOL_IMAGES` the images):
``official_test`` tests the official_test model on the official test images
(``official_test_first1000``: the first 1,000, as the pymdp port reports); ``paper_slice``
and ``paper_slice_demo`` test their models on the slice (the demo's protocol);
``validation`` tests the official_test model on the validation images; ``stream`` has it
classify the stream it learned from (a training accuracy). Every evaluation records its
model's recipe in ``params`` (``fit``, ``l1_block``, ``eta``: columns of the table).

Under the paper preset's probe (a ``probe`` block in a job's hand-off) every job reads
the paper's data and fits its quantiser on the paper's images, then active learning (the
model's training: one update per stream image) takes the probe's steps, each timed, and
every classification keeps the probe's batches of images in a measured block; each job
leaves a probe record and its runs' provenance says ``probe``. The code is numpy: the
records say ``cpu_bound``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.config import build
from rgbench.data.preprocess import exemplar_index, rgm_ranks
from rgbench.evaluation.accuracy import accuracy_by_elbo_quantile, confident_half_accuracy
from rgbench.evaluation.stats import binomial_se
from rgbench.io import atomic_path, file_sha256, load_npz, read_json, save_npz_atomic, write_json_atomic
from rgbench.models.rgm import RGM
from rgbench.models.rgm_config import (HierarchyConfig, InferenceConfig, LearningConfig, QuantiserConfig, RGMConfig,
                                       check_choice)
from rgbench.models.rgm_quantiser import fit_quantiser
from rgbench.probe import Probe, capped, measured, probe_record_path, probe_steps, split_probe
from rgbench.results import provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, progress

log = get_logger("rgm")

# the images a fitted model's SVD and bins may be fit on (rgm.fits.<name>.fit_set)
FIT_SET_CHOICES = ("stream", "stream+slice")
# evaluation protocol -> the fitted model it classifies with (a name of rgm.fits)
PROTOCOL_FITS = {"official_test": "official_test", "official_test_first1000": "official_test",
                 "validation": "official_test", "paper_slice": "paper_slice",
                 "paper_slice_demo": "paper_slice_demo", "stream": "official_test"}
# evaluation protocol -> the images it classifies (see evaluation_split)
PROTOCOL_IMAGES = {"official_test": "test", "official_test_first1000": "test_first1000", "validation": "validation",
                   "paper_slice": "slice", "paper_slice_demo": "slice", "stream": "stream"}
# the rgm section's keys that make up the model's settings (every hand-off carries them)
MODEL_KEYS = tuple(f.name for f in fields(RGMConfig))


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in key by key (nested mappings merged, not replaced);
    an override key that ``base`` lacks is an error naming it."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if key not in out:
            raise KeyError(f"override key {key!r} is not a setting; known: {sorted(out)}")
        out[key] = merge(out[key], value) if isinstance(value, Mapping) else copy.deepcopy(value)
    return out


def with_overrides(config: RGMConfig, overrides: Mapping[str, Any]) -> RGMConfig:
    """``config`` with ``overrides`` (nested model keys) merged in, checked as any config is."""
    return build(RGMConfig, merge(asdict(config), overrides))


# ----------------------------------------------------------------------------------
# the hand-offs: one dataclass per rule (rgm_functions.smk builds the mappings)


@dataclass
class StreamData:
    """The ``rgm.data`` keys a fit reads: which training images (original order) it uses."""

    exemplars_per_class: int  # the first N of each digit in the stream
    stream_start: int
    stream_size: int
    slice_start: int
    slice_size: int

    def stream_rows(self, n_train: int) -> np.ndarray:
        start, size = self.stream_start, self.stream_size
        if start + size > n_train:
            raise ValueError(f"stream {start}:{start + size} runs past the {n_train} training images")
        return np.arange(start, start + size)

    def slice_rows(self, n_train: int) -> np.ndarray:
        start, size = self.slice_start, self.slice_size
        stream_end = self.stream_start + self.stream_size
        if start < stream_end and start + size > self.stream_start:
            raise ValueError(f"paper slice {start}:{start + size} overlaps the stream {self.stream_start}:{stream_end}")
        if start + size > n_train:
            raise ValueError(f"paper slice {start}:{start + size} runs past the {n_train} training images")
        return np.arange(start, start + size)


@dataclass
class SplitData(StreamData):
    """The stream and slice plus the validation images (the ablation's ``data``)."""

    val_size: int

    def validation_rows(self, val_index: np.ndarray, n_train: int) -> np.ndarray:
        """The validation split's rows outside the stream and the paper slice, first val_size."""
        taken = np.zeros(n_train, dtype=bool)
        taken[self.stream_rows(n_train)] = True
        taken[self.slice_rows(n_train)] = True
        rows = np.sort(np.asarray(val_index))
        rows = rows[~taken[rows]]
        if len(rows) < self.val_size:
            raise ValueError(f"only {len(rows)} validation images lie outside the stream and the slice, "
                             f"{self.val_size} asked (data.val_size or rgm.data.val_size)")
        return rows[:self.val_size]


@dataclass
class EvaluationData(SplitData):
    """Every ``rgm.data`` key (an evaluation's ``data``)."""

    test_limit: int  # official_test: the first test_limit test images (0: all)


@dataclass
class ModelRun:
    """The model settings every rgm hand-off carries (the rgm section's :data:`MODEL_KEYS`)."""

    quantiser: QuantiserConfig
    hierarchy: HierarchyConfig
    learning: LearningConfig
    inference: InferenceConfig

    def __post_init__(self) -> None:
        self.model_config()  # RGMConfig's own checks stop a bad hand-off before any work

    def model_config(self) -> RGMConfig:
        return RGMConfig(self.quantiser, self.hierarchy, self.learning, self.inference)


@dataclass
class FitRecipe:
    """One entry of ``rgm.fits``: the images the SVD and bins are fit on and the recipe, as
    overrides of the model settings (no ``preprocess`` key: a fit reads the 32x32 cache)."""

    fit_set: str  # stream | stream+slice
    overrides: dict[str, Any]

    def __post_init__(self) -> None:
        check_choice("fit_set", self.fit_set, FIT_SET_CHOICES)


@dataclass
class FittedRun(ModelRun):
    """A hand-off about one fitted model: its name and its recipe."""

    fit: str
    recipe: FitRecipe

    def __post_init__(self) -> None:
        super().__post_init__()
        self.fitted_config()  # an unknown override key stops the job before any work

    def fitted_config(self) -> RGMConfig:
        """The settings the model is fit and read back with: the defaults, then the fit's overrides."""
        return with_overrides(self.model_config(), self.recipe.overrides)


@dataclass
class FitRun(FittedRun):
    """rgm_train: fit the model named ``fit``."""

    data: StreamData


@dataclass
class EvaluationRun(FittedRun):
    """rgm_evaluate: classify the images of one ``protocol`` with its fitted model."""

    seed: int
    protocol: str
    data: EvaluationData

    def __post_init__(self) -> None:
        check_choice("protocol", self.protocol, list(PROTOCOL_FITS))
        if self.fit != PROTOCOL_FITS[self.protocol]:
            raise ValueError(f"protocol {self.protocol!r} classifies with the model {PROTOCOL_FITS[self.protocol]!r}, "
                             f"the hand-off names {self.fit!r}")
        super().__post_init__()

    def recipe_params(self) -> dict[str, Any]:
        """The model's recipe for metrics.json ``params``: its name, the two keys the demo's
        recipe and ours differ in (flat, so the table has them as columns), the overrides."""
        config = self.fitted_config()
        return {"fit": self.fit, "l1_block": config.hierarchy.l1_block, "eta": config.learning.eta,
                "overrides": self.recipe.overrides}


@dataclass
class AblationRun(ModelRun):
    """rgm_ablation: the defaults with one variant's ``overrides`` merged in."""

    data: SplitData
    preprocess: dict[str, Any]  # the data.rgm settings the 32x32 cache was built with
    ablation_stream: int  # stream images the variant learns from
    variant: str
    overrides: dict[str, Any]  # model keys and, under "preprocess", data.rgm keys

    def __post_init__(self) -> None:
        super().__post_init__()
        self.variant_model_config()  # an unknown override key stops the job before any work
        self.variant_preprocess()

    def variant_model_config(self) -> RGMConfig:
        model_overrides = {key: value for key, value in self.overrides.items() if key != "preprocess"}
        return with_overrides(self.model_config(), model_overrides)

    def variant_preprocess(self) -> dict[str, Any]:
        return merge(self.preprocess, self.overrides.get("preprocess", {}))


@dataclass
class AblationTableConfig:
    """rgm_ablation_table: each variant's description."""

    descriptions: dict[str, str]


@dataclass
class SamplesConfig:
    """The ``rgm.samples`` block."""

    n_reconstruct: int  # test images reconstructed from each level
    n_generate: int  # generated digits per class
    mixing_steps: int
    mix_pair: list[int]  # the two classes whose beliefs are mixed


@dataclass
class SamplesRun(FittedRun):
    """rgm_samples: the arrays the figures draw (from the official_test model)."""

    seed: int
    samples: SamplesConfig


# ----------------------------------------------------------------------------------
# data


def stream_exemplars(labels: np.ndarray, stream: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` images of each digit in the stream, digit by digit (the demo's j)."""
    return stream[exemplar_index(labels[stream], per_class).reshape(-1)]


# ----------------------------------------------------------------------------------
# fitting


def fit_model(config: RGMConfig, images: np.ndarray, labels: np.ndarray, stream: np.ndarray, fit_rows: np.ndarray,
              per_class: int, learn_limit: int | None = None, desc: str = "rgm active learning",
              probe: Probe | None = None) -> tuple[RGM, dict[str, Any], dict[str, np.ndarray]]:
    """SVD quantiser on ``fit_rows``, structure learning on the stream's exemplars, active
    learning over the stream in order (its first ``learn_limit`` images when given; a
    ``probe``'s steps of them, each timed). Returns the model, a summary and the stream
    record."""
    t0 = time.process_time()
    quantiser = fit_quantiser(images[fit_rows], config.quantiser)
    svd_cpu = time.process_time() - t0
    exemplars = stream_exemplars(labels, stream, per_class)
    codes_ex = quantiser.encode(images[exemplars])
    model = RGM(config, quantiser)
    t0 = time.process_time()
    report = model.learn_structure(codes_ex, labels[exemplars])
    structure_cpu = time.process_time() - t0
    log.info("structure learning: %.3f CPU s, states per level (min-max) %s", structure_cpu,
             [(min(s), max(s)) for s in report.n_states])
    n_learn = len(stream[:learn_limit])
    stream = stream[:probe_steps(probe, n_learn)]
    with measured(probe, "encode_stream", count=False):
        codes = quantiser.encode(images[stream])
        if probe is not None:
            probe.cut(n_learn, len(stream))

    def steps(items: Any) -> Any:
        return probe.timed_steps(items, desc, n_learn) if probe is not None else items

    t0 = time.process_time()
    record = model.learn_stream(codes, labels[stream], progress=lambda it: progress(steps(it), desc=desc, unit="img"),
                                record_every=max(1, len(stream) // 200))
    learn_cpu = time.process_time() - t0
    weights = record["mean_weight"]
    summary = {
        "svd_cpu_seconds": svd_cpu,
        "structure_seconds": structure_cpu,
        "learn_seconds": learn_cpu,
        "n_exemplars": int(len(exemplars)),
        "stream_size": int(len(stream)),
        "fit_images": int(len(fit_rows)),
        "states_per_level": report.n_states,
        "top_states": report.top_states,
        "modes_per_group": quantiser.n_modes.tolist(),
        "accepted_share": float(np.mean(record["class_weight"] > 0.5)),
        "mean_weight_per_level": weights.mean(axis=0).tolist(),
        "final_mi_per_level": model.mutual_information_per_level().tolist(),
    }
    log.info("active learning: %.1f CPU s for %d images; mean weight per level %s; accepted share %.3f",
             learn_cpu, len(stream), np.round(weights.mean(axis=0), 3).tolist(), summary["accepted_share"])
    return model, summary, record


def train_job(config: Mapping[str, Any], mnist32: str, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Fit the model ``config["fit"]`` names: model.npz, stream.npz and fit.json in out_dir
    (and under a probe its probe record)."""
    settings, probe = split_probe(config)
    run = build(FitRun, settings)
    data = load_npz(mnist32)
    images, labels = data["train_rgm"], data["train_labels"]
    stream = run.data.stream_rows(len(images))
    fit_set = run.recipe.fit_set
    fit_rows = stream if fit_set == "stream" else np.concatenate([stream, run.data.slice_rows(len(images))])
    model, summary, record = fit_model(run.fitted_config(), images, labels, stream, fit_rows,
                                       run.data.exemplars_per_class, desc=f"rgm active learning ({run.fit})",
                                       probe=probe)
    summary["fit_set"] = fit_set
    if probe is not None:
        summary["probe"] = True  # every evaluation of a probe's model is a probe's
    out = os.fspath(out_dir)
    save_npz_atomic(f"{out}/model.npz", **model.arrays())
    save_npz_atomic(f"{out}/stream.npz", index=stream, labels=labels[stream], mean_weight=record["mean_weight"],
                    class_weight=record["class_weight"], mi=record["mi"], mi_index=record["mi_index"],
                    n_classes=np.array(model.config.hierarchy.n_classes))
    write_json_atomic(f"{out}/fit.json", summary)
    if probe is not None:
        probe.write(probe_record_path(out, probe), device=describe_device("cpu"), n_params=None, cpu_bound=True)
    return summary


def load_model(model_npz: str, config: RGMConfig) -> RGM:
    return RGM.from_arrays(config, load_npz(model_npz))


# ----------------------------------------------------------------------------------
# evaluation


def evaluation_split(protocol: str, data: Mapping[str, np.ndarray],
                     d: EvaluationData) -> tuple[np.ndarray, np.ndarray, str]:
    """Test images, labels and a description of an evaluation protocol's images."""
    if protocol not in PROTOCOL_IMAGES:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOL_IMAGES)}")
    images, n_train = PROTOCOL_IMAGES[protocol], len(data["train_rgm"])
    if images in ("test", "test_first1000"):
        limit = 1000 if images == "test_first1000" else (d.test_limit or len(data["test_rgm"]))
        limit = min(limit, len(data["test_rgm"]))
        return data["test_rgm"][:limit], data["test_labels"][:limit], f"official test images 1-{limit}"
    if images == "validation":
        rows = d.validation_rows(data["val_index"], n_train)
        return data["train_rgm"][rows], data["train_labels"][rows], f"{len(rows)} validation images"
    rows = d.slice_rows(n_train) if images == "slice" else d.stream_rows(n_train)
    described = f"training images {rows[0] + 1}-{rows[-1] + 1}"
    if images == "stream":
        described += " (the stream the model learned from)"
    return data["train_rgm"][rows], data["train_labels"][rows], described


def score(model: RGM, codes: np.ndarray, labels: np.ndarray, desc: str,
          split: str = "test") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Accuracy (``<split>_accuracy``, with its binomial SE), confident-half accuracy under
    every ELBO and its number of images (``confident_half_n``: those above the median ELBO,
    the trials behind it); ``split`` names the images scored (``test``, or ``val`` in the
    ablation)."""
    t0 = time.process_time()
    out = model.classify(codes, progress=lambda it: progress(it, desc=desc, unit="batch"))
    infer_cpu = time.process_time() - t0
    correct = out["pred"] == labels
    ranking = out["elbo"]
    n_upper = int(np.sum(ranking > np.median(ranking)))
    accuracy, half = float(correct.mean()), confident_half_accuracy(correct, ranking)
    metrics = {
        f"{split}_accuracy": accuracy,
        f"{split}_accuracy_se": binomial_se(accuracy, len(labels)),
        "confident_half_accuracy": half,
        "confident_half_accuracy_se": binomial_se(half, n_upper),
        "confident_half_n": n_upper,
        "confident_half_accuracy_spm_elbo": confident_half_accuracy(correct, out["spm_elbo"]),
        "confident_half_accuracy_sum_levels": confident_half_accuracy(correct, out["sum_levels"]),
        "confident_half_accuracy_exact_elbo": confident_half_accuracy(correct, out["log_evidence"]),
        "median_elbo": float(np.median(ranking)),
        "infer_seconds": infer_cpu,
    }
    arrays = {"pred": out["pred"], "labels": labels, "elbo": ranking, "spm_elbo": out["spm_elbo"],
              "sum_levels": out["sum_levels"], "log_evidence": out["log_evidence"], "correct": correct}
    return metrics, arrays


def evaluate_job(config: Mapping[str, Any], mnist32: str, model_npz: str, fit_json: str, stream_npz: str,
                 metrics_json: str, scores_npz: str) -> dict[str, Any]:
    """Classify the images of the protocol ``config["protocol"]`` names with its fitted model
    (a probe: its batches of them)."""
    started = time.perf_counter()
    settings, probe = split_probe(config)
    run = build(EvaluationRun, settings)
    protocol = run.protocol
    model = load_model(model_npz, run.fitted_config())
    summary = read_json(fit_json)
    data = load_npz(mnist32)
    images, labels, described = evaluation_split(protocol, data, run.data)
    with measured(probe, "classify", count=False):
        n = capped(probe, len(labels), model.config.inference.batch)
        images, labels = images[:n], labels[:n]
        metrics, arrays = score(model, model.quantiser.encode(images), labels, f"rgm {protocol}")
    save_npz_atomic(scores_npz, **arrays)
    stream = load_npz(stream_npz)
    n_levels = len(summary["final_mi_per_level"])
    metrics.update({
        "protocol": protocol,
        "run": protocol,  # the run id, a column of tables/rgm.csv since its first version
        "test_set": described,
        "fit_set": summary["fit_set"],
        "stream_size": summary["stream_size"],
        "structure_seconds": summary["structure_seconds"],
        "learn_seconds": summary["learn_seconds"],
        "top_states": summary["top_states"],
        "accepted_share": summary["accepted_share"],
        "class_weight_mean": float(np.mean(stream["class_weight"])),
        "top_mi": summary["final_mi_per_level"][-1],
        "top_mi_bound": math.log(model.config.hierarchy.n_classes),
    })
    for level in range(n_levels - 1):
        metrics[f"mi_level{level + 1}"] = summary["final_mi_per_level"][level]
    n_val = len(run.data.validation_rows(data["val_index"], len(data["train_rgm"])))
    log.info("%s: accuracy %.4f (SE %.4f), confident half %.4f on %d images", protocol, metrics["test_accuracy"],
             metrics["test_accuracy_se"], metrics["confident_half_accuracy"], len(labels))
    write_metrics(metrics_json, experiment="rgm", run_id=protocol, params=run.recipe_params(), seed=run.seed,
                  metrics=metrics,
                  wall_seconds=time.perf_counter() - started, device=describe_device("cpu"),
                  provenance=provenance(n_train=summary["stream_size"], n_val=n_val, n_test=len(labels),
                                        data_sha256=file_sha256(mnist32), n_params=None, steps_run=summary["stream_size"],
                                        probe=probe is not None or bool(summary.get("probe"))),
                  extra={"accuracy_by_elbo_decile": accuracy_by_elbo_quantile(arrays["correct"], arrays["elbo"]).tolist(),
                         "states_per_level": summary["states_per_level"],
                         "modes_per_group": summary["modes_per_group"],
                         "mean_weight_per_level": summary["mean_weight_per_level"]})
    if probe is not None:
        probe.write(probe_record_path(os.path.dirname(metrics_json), probe), device=describe_device("cpu"),
                    n_params=None, cpu_bound=True)
    return metrics


# ----------------------------------------------------------------------------------
# ablation


def ablation_inputs(preprocess: Mapping[str, Any], cache_settings: Mapping[str, Any], mnist28: str, mnist32: str,
                    rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training images as the variant's preprocessing makes them (the cache itself when it
    matches; else rebuilt from the 28x28 cache for ``rows`` only, other rows left 0) and
    the labels."""
    data = load_npz(mnist32)
    if dict(preprocess) == dict(cache_settings):
        return data["train_rgm"], data["train_labels"]
    raw = load_npz(mnist28)["train_images"]
    rebuilt = rgm_ranks(raw[rows], preprocess["size"], preprocess["resize"], preprocess["smoothing_sigma"],
                        preprocess["boundary"], preprocess["ranks"])
    images = np.zeros((len(raw), *rebuilt.shape[1:]), dtype=rebuilt.dtype)
    images[rows] = rebuilt
    return images, data["train_labels"]


def ablation_job(config: Mapping[str, Any], mnist28: str, mnist32: str, metrics_json: str) -> dict[str, Any]:
    """One ablation variant: the default settings with ``config["overrides"]`` merged in,
    active learning over the first ``ablation_stream`` stream images, scored on the
    validation images (``val_accuracy``). The SVD and bins are fit on the whole stream and
    the exemplars taken from it, as in official_test. A probe learns its steps of the
    stream and scores its batches of the validation images."""
    started = time.perf_counter()
    settings, probe = split_probe(config)
    run = build(AblationRun, settings)
    cache = load_npz(mnist32)
    n_train = len(cache["train_labels"])
    stream = run.data.stream_rows(n_train)
    short = stream[:run.ablation_stream]
    val = run.data.validation_rows(cache["val_index"], n_train)
    images, labels = ablation_inputs(run.variant_preprocess(), run.preprocess, mnist28, mnist32,
                                     np.union1d(stream, val))
    model, summary, _ = fit_model(run.variant_model_config(), images, labels, stream, stream, run.data.exemplars_per_class,
                                  len(short), desc=f"rgm ablation {run.variant}", probe=probe)
    with measured(probe, "validate", count=False):
        val = val[:capped(probe, len(val), model.config.inference.batch)]
        metrics, _ = score(model, model.quantiser.encode(images[val]), labels[val], f"rgm ablation {run.variant}",
                           split="val")
    metrics.update({"variant": run.variant, "learn_seconds": summary["learn_seconds"],
                    "accepted_share": summary["accepted_share"], "top_mi": summary["final_mi_per_level"][-1]})
    write_metrics(metrics_json, experiment="rgm_ablation", run_id=run.variant, params={"overrides": run.overrides},
                  seed=None, metrics=metrics, wall_seconds=time.perf_counter() - started,
                  device=describe_device("cpu"),
                  provenance=provenance(n_train=summary["stream_size"], n_val=len(val), n_test=0,
                                        data_sha256=file_sha256(mnist32), n_params=None,
                                        steps_run=summary["stream_size"], svd_fit_images=len(stream),
                                        probe=probe is not None))
    if probe is not None:
        probe.write(probe_record_path(os.path.dirname(metrics_json), probe), device=describe_device("cpu"),
                    n_params=None, cpu_bound=True)
    return metrics


ABLATION_COLUMNS = ["variant", "description", "val_accuracy", "val_accuracy_se", "confident_half_accuracy",
                    "confident_half_accuracy_exact_elbo", "delta_accuracy", "delta_confident_half", "accepted_share",
                    "top_mi", "learn_seconds", "n_train", "n_val"]
# what the table takes from each variant's metrics.json, under the same names
ABLATION_METRICS = ["variant", "val_accuracy", "val_accuracy_se", "confident_half_accuracy",
                    "confident_half_accuracy_exact_elbo", "accepted_share", "top_mi", "learn_seconds"]


def ablation_table_job(metrics_files: Sequence[str], config: Mapping[str, Any], output_csv: str) -> pd.DataFrame:
    """tables/rgm_ablation.csv: one row per variant, the differences to the full model."""
    descriptions = build(AblationTableConfig, config).descriptions
    rows = []
    for path in metrics_files:
        record = read_json(path)
        m, p = record["metrics"], record["provenance"]
        missing = [key for key in ABLATION_METRICS if key not in m]
        if missing:
            raise ValueError(f"{path} lacks {missing}: it was written by an older rgm_ablation; rerun that rule")
        rows.append({**{key: m[key] for key in ABLATION_METRICS}, "description": descriptions.get(m["variant"], ""),
                     "n_train": p["n_train"], "n_val": p["n_val"]})
    table = pd.DataFrame(rows)
    if "full" not in set(table["variant"]):
        raise ValueError("the ablation needs a variant named 'full' (the default settings)")
    full = table.set_index("variant").loc["full"]
    table["delta_accuracy"] = table["val_accuracy"] - full["val_accuracy"]
    table["delta_confident_half"] = table["confident_half_accuracy"] - full["confident_half_accuracy"]
    table = table[ABLATION_COLUMNS]
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


# ----------------------------------------------------------------------------------
# samples for the figures


def samples_job(config: Mapping[str, Any], mnist32: str, model_npz: str, out_npz: str) -> None:
    """Arrays for the figures: reconstructions from each level of some test images,
    samples per class, and predictive images along a mixture of two digits. A few images at
    the paper's size already: a probe runs all of it and only leaves its record."""
    settings, probe = split_probe(config)
    run = build(SamplesRun, settings)
    model = load_model(model_npz, run.fitted_config())
    fig = run.samples
    rng = np.random.default_rng(run.seed)
    data = load_npz(mnist32)
    images = data["test_rgm"][:fig.n_reconstruct]
    codes = model.quantiser.encode(images)
    out = model.infer(codes)
    q = model.quantiser
    recon = [q.decode(codes)]                                                # the quantised input
    for level in range(1, model.n_structure_levels + 1):
        recon.append(q.decode_expected(model.predict_down(out["q"][level - 1], level)))
    n_classes = model.config.hierarchy.n_classes
    classes = np.repeat(np.arange(n_classes), fig.n_generate)
    generated = q.decode(model.sample(classes, rng, modes_below_top=True))
    ancestral = q.decode(model.sample(np.arange(n_classes), rng))
    eye = np.eye(n_classes)
    top = model.n_structure_levels
    predictive = q.decode_expected(model.predict_down(model.class_to_top(eye), top))
    a, b = fig.mix_pair
    weights = np.linspace(0.0, 1.0, fig.mixing_steps)
    mix = np.stack([(1 - w) * eye[a] + w * eye[b] for w in weights])
    mixing = q.decode_expected(model.predict_down(model.class_to_top(mix), top))
    save_npz_atomic(out_npz, originals=q.prepare(images), reconstructions=np.stack(recon), generated=generated,
                    generated_classes=classes, ancestral=ancestral, predictive=predictive, mixing=mixing,
                    mixing_weights=weights, mix_pair=np.array([a, b]))
    if probe is not None:
        probe.write(probe_record_path(os.path.dirname(out_npz), probe), device=describe_device("cpu"), n_params=None,
                    cpu_bound=True)
