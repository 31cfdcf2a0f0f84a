"""RGM jobs: fit (SVD quantiser, structure learning, active learning), evaluate a protocol,
the ablation (one variant per job, then the table), samples for the figures. Scripts in
scripts/rgm_*.py call these.

Data (training images in their original order, as the demo streams them):

- stream: training images ``stream_start + 1 .. stream_start + stream_size``; the exemplars
  are the first ``exemplars_per_class`` images of each digit in it;
- paper slice: training images ``slice_start + 1 .. slice_start + slice_size``;
- validation: the rows of the project's seeded validation split (``val_index``) outside
  the stream and the slice, the first ``val_size`` of them in index order. Every choice
  of a default is made on it (the ablation); the official test set decides nothing.

Protocols: ``official_test`` fits the SVD and bins on the stream and tests on the official
test images (``official_test_first1000``: the first 1,000, as the pymdp port reports);
``paper_slice`` is the demo's protocol: the SVD and bins fit on stream + slice, tested on
the slice; ``validation`` tests the official_test model on the validation images.
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.config import build
from rgbench.data.preprocess import exemplar_index, rgm_ranks
from rgbench.io import atomic_path, file_sha256, load_npz, read_json, save_npz_atomic, write_json_atomic
from rgbench.models.rgm import (RGM, RGMConfig, accuracy_by_elbo_quantile, binomial_se, confident_half_accuracy,
                                fit_quantiser)
from rgbench.results import provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, progress

log = get_logger("rgm")

FIT_SETS = {"official_test": "stream", "paper_slice": "stream+slice"}
EVALUATIONS = {"official_test": "official_test", "official_test_first1000": "official_test",
               "validation": "official_test", "paper_slice": "paper_slice"}
MODEL_KEYS = ("quantiser", "hierarchy", "learning", "inference")


def model_config(section: Mapping[str, Any]) -> RGMConfig:
    """The RGMConfig from the ``rgm:`` section's model keys (strictly checked)."""
    return build(RGMConfig, {key: section[key] for key in MODEL_KEYS})


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in key by key (nested mappings merged, not replaced);
    an override key that ``base`` lacks is an error naming it."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if key not in out:
            raise KeyError(f"override key {key!r} is not a setting; known: {sorted(out)}")
        out[key] = merge(out[key], value) if isinstance(value, Mapping) else copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------------
# data


def stream_indices(data_cfg: Mapping[str, Any], n_train: int) -> np.ndarray:
    start, size = data_cfg["stream_start"], data_cfg["stream_size"]
    if start + size > n_train:
        raise ValueError(f"stream {start}:{start + size} runs past the {n_train} training images")
    return np.arange(start, start + size)


def slice_indices(data_cfg: Mapping[str, Any], n_train: int) -> np.ndarray:
    start, size = data_cfg["slice_start"], data_cfg["slice_size"]
    stream_start, stream_end = data_cfg["stream_start"], data_cfg["stream_start"] + data_cfg["stream_size"]
    if start < stream_end and start + size > stream_start:
        raise ValueError(f"paper slice {start}:{start + size} overlaps the stream {stream_start}:{stream_end}")
    if start + size > n_train:
        raise ValueError(f"paper slice {start}:{start + size} runs past the {n_train} training images")
    return np.arange(start, start + size)


def validation_indices(data_cfg: Mapping[str, Any], val_index: np.ndarray, n_train: int) -> np.ndarray:
    """The validation split's rows outside the stream and the paper slice, first val_size."""
    taken = np.zeros(n_train, dtype=bool)
    taken[stream_indices(data_cfg, n_train)] = True
    taken[slice_indices(data_cfg, n_train)] = True
    rows = np.sort(np.asarray(val_index))
    rows = rows[~taken[rows]]
    if len(rows) < data_cfg["val_size"]:
        raise ValueError(f"only {len(rows)} validation images lie outside the stream and the slice, "
                         f"{data_cfg['val_size']} asked (data.val_size or rgm.data.val_size)")
    return rows[:data_cfg["val_size"]]


def stream_exemplars(labels: np.ndarray, stream: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` images of each digit in the stream, digit by digit (the demo's j)."""
    return stream[exemplar_index(labels[stream], per_class).reshape(-1)]


# ----------------------------------------------------------------------------------
# fitting


def fit_model(config: RGMConfig, images: np.ndarray, labels: np.ndarray, stream: np.ndarray, fit_rows: np.ndarray,
              per_class: int, learn_limit: int | None = None,
              desc: str = "rgm active learning") -> tuple[RGM, dict[str, Any], dict[str, np.ndarray]]:
    """SVD quantiser on ``fit_rows``, structure learning on the stream's exemplars, active
    learning over the stream in order (its first ``learn_limit`` images when given).
    Returns the model, a summary and the stream record."""
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
    stream = stream[:learn_limit]
    codes = quantiser.encode(images[stream])
    t0 = time.process_time()
    record = model.learn_stream(codes, labels[stream], progress=lambda it: progress(it, desc=desc, unit="img"),
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


def train_job(section: Mapping[str, Any], mnist32: str, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Fit the model of ``section["protocol"]``: model.npz, stream.npz and fit.json in out_dir."""
    protocol = section["protocol"]
    if protocol not in FIT_SETS:
        raise ValueError(f"unknown fit protocol {protocol!r}; expected one of {sorted(FIT_SETS)}")
    config = model_config(section)
    data = load_npz(mnist32)
    images, labels = data["train_rgm"], data["train_labels"]
    d = section["data"]
    stream = stream_indices(d, len(images))
    fit_rows = stream if FIT_SETS[protocol] == "stream" else np.concatenate([stream, slice_indices(d, len(images))])
    model, summary, record = fit_model(config, images, labels, stream, fit_rows, d["exemplars_per_class"])
    summary["fit_set"] = FIT_SETS[protocol]
    out = os.fspath(out_dir)
    save_npz_atomic(f"{out}/model.npz", **model.arrays())
    save_npz_atomic(f"{out}/stream.npz", index=stream, labels=labels[stream], mean_weight=record["mean_weight"],
                    class_weight=record["class_weight"], mi=record["mi"], mi_index=record["mi_index"],
                    n_classes=np.array(config.hierarchy.n_classes))
    write_json_atomic(f"{out}/fit.json", summary)
    return summary


def load_model(model_npz: str, section: Mapping[str, Any]) -> RGM:
    return RGM.from_arrays(model_config(section), load_npz(model_npz))


# ----------------------------------------------------------------------------------
# evaluation


def evaluation_split(run: str, data: Mapping[str, np.ndarray], d: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """Test images, labels and a description of an evaluation run."""
    n_train = len(data["train_rgm"])
    if run in ("official_test", "official_test_first1000"):
        limit = 1000 if run == "official_test_first1000" else (d["test_limit"] or len(data["test_rgm"]))
        limit = min(limit, len(data["test_rgm"]))
        return data["test_rgm"][:limit], data["test_labels"][:limit], f"official test images 1-{limit}"
    if run == "paper_slice":
        rows = slice_indices(d, n_train)
        return data["train_rgm"][rows], data["train_labels"][rows], f"training images {rows[0] + 1}-{rows[-1] + 1}"
    if run == "validation":
        rows = validation_indices(d, data["val_index"], n_train)
        return data["train_rgm"][rows], data["train_labels"][rows], f"{len(rows)} validation images"
    raise ValueError(f"unknown evaluation {run!r}; expected one of {sorted(EVALUATIONS)}")


def score(model: RGM, codes: np.ndarray, labels: np.ndarray, desc: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Accuracy (with its binomial SE), confident-half accuracy under both ELBOs."""
    t0 = time.process_time()
    out = model.classify(codes, progress=lambda it: progress(it, desc=desc, unit="batch"))
    infer_cpu = time.process_time() - t0
    correct = out["pred"] == labels
    ranking = out["elbo"]
    upper = ranking > np.median(ranking)
    accuracy, half = float(correct.mean()), confident_half_accuracy(correct, ranking)
    metrics = {
        "test_accuracy": accuracy,
        "test_accuracy_se": binomial_se(accuracy, len(labels)),
        "confident_half_accuracy": half,
        "confident_half_accuracy_se": binomial_se(half, int(upper.sum())),
        "confident_half_accuracy_spm_elbo": confident_half_accuracy(correct, out["spm_elbo"]),
        "confident_half_accuracy_sum_levels": confident_half_accuracy(correct, out["sum_levels"]),
        "confident_half_accuracy_exact_elbo": confident_half_accuracy(correct, out["log_evidence"]),
        "median_elbo": float(np.median(ranking)),
        "infer_seconds": infer_cpu,
    }
    arrays = {"pred": out["pred"], "labels": labels, "elbo": ranking, "spm_elbo": out["spm_elbo"],
              "sum_levels": out["sum_levels"], "log_evidence": out["log_evidence"], "correct": correct}
    return metrics, arrays


def evaluate_job(section: Mapping[str, Any], mnist32: str, model_npz: str, fit_json: str, stream_npz: str,
                 metrics_json: str, scores_npz: str) -> dict[str, Any]:
    """Classify an evaluation run's images (``section["run"]``) with its protocol's model."""
    started = time.perf_counter()
    run = section["run"]
    model = load_model(model_npz, section)
    summary = read_json(fit_json)
    data = load_npz(mnist32)
    d = section["data"]
    images, labels, described = evaluation_split(run, data, d)
    metrics, arrays = score(model, model.quantiser.encode(images), labels, f"rgm {run}")
    save_npz_atomic(scores_npz, **arrays)
    stream = load_npz(stream_npz)
    n_levels = len(summary["final_mi_per_level"])
    metrics.update({
        "protocol": run,
        "run": run,
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
    n_val = len(validation_indices(d, data["val_index"], len(data["train_rgm"])))
    log.info("%s: accuracy %.4f (SE %.4f), confident half %.4f on %d images", run, metrics["test_accuracy"],
             metrics["test_accuracy_se"], metrics["confident_half_accuracy"], len(labels))
    write_metrics(metrics_json, experiment="rgm", run_id=run, params={}, seed=section["seed"], metrics=metrics,
                  wall_seconds=time.perf_counter() - started, device=describe_device("cpu"),
                  provenance=provenance(n_train=summary["stream_size"], n_val=n_val, n_test=len(labels),
                                        data_sha256=file_sha256(mnist32), n_params=None, steps_run=summary["stream_size"]),
                  extra={"accuracy_by_elbo_decile": accuracy_by_elbo_quantile(arrays["correct"], arrays["elbo"]).tolist(),
                         "states_per_level": summary["states_per_level"],
                         "modes_per_group": summary["modes_per_group"],
                         "mean_weight_per_level": summary["mean_weight_per_level"]})
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


def ablation_job(section: Mapping[str, Any], mnist28: str, mnist32: str, metrics_json: str) -> dict[str, Any]:
    """One ablation variant: the default settings with ``section["overrides"]`` merged in,
    active learning over the first ``ablation_stream`` stream images, scored on the
    validation images. The SVD and bins are fit on the whole stream and the exemplars taken
    from it, as in official_test."""
    started = time.perf_counter()
    variant = section["variant"]
    overrides = dict(section["overrides"])
    preprocess = merge(section["preprocess"], overrides.pop("preprocess", {}))
    settings = merge({key: section[key] for key in MODEL_KEYS}, overrides)
    config = build(RGMConfig, settings)
    d = section["data"]
    cache = load_npz(mnist32)
    n_train = len(cache["train_labels"])
    stream = stream_indices(d, n_train)
    short = stream[:section["ablation_stream"]]
    val = validation_indices(d, cache["val_index"], n_train)
    images, labels = ablation_inputs(preprocess, section["preprocess"], mnist28, mnist32, np.union1d(stream, val))
    model, summary, _ = fit_model(config, images, labels, stream, stream, d["exemplars_per_class"], len(short),
                                  desc=f"rgm ablation {variant}")
    metrics, _ = score(model, model.quantiser.encode(images[val]), labels[val], f"rgm ablation {variant}")
    metrics.update({"variant": variant, "learn_seconds": summary["learn_seconds"],
                    "accepted_share": summary["accepted_share"], "top_mi": summary["final_mi_per_level"][-1]})
    write_metrics(metrics_json, experiment="rgm_ablation", run_id=variant, params={"overrides": section["overrides"]},
                  seed=None, metrics=metrics, wall_seconds=time.perf_counter() - started,
                  device=describe_device("cpu"),
                  provenance=provenance(n_train=len(short), n_val=len(val), n_test=0, data_sha256=file_sha256(mnist32),
                                        n_params=None, steps_run=len(short), svd_fit_images=len(stream)))
    return metrics


ABLATION_COLUMNS = ["variant", "description", "val_accuracy", "val_accuracy_se", "confident_half_accuracy",
                    "confident_half_accuracy_exact_elbo", "delta_accuracy", "delta_confident_half", "accepted_share",
                    "top_mi", "learn_seconds", "n_train", "n_val"]


def ablation_table_job(metrics_files: Sequence[str], descriptions: Mapping[str, str], output_csv: str) -> pd.DataFrame:
    """tables/rgm_ablation.csv: one row per variant, the differences to the full model."""
    rows = []
    for path in metrics_files:
        record = read_json(path)
        m, p = record["metrics"], record["provenance"]
        rows.append({"variant": m["variant"], "description": descriptions.get(m["variant"], ""),
                     "val_accuracy": m["test_accuracy"], "val_accuracy_se": m["test_accuracy_se"],
                     "confident_half_accuracy": m["confident_half_accuracy"],
                     "confident_half_accuracy_exact_elbo": m["confident_half_accuracy_exact_elbo"],
                     "accepted_share": m["accepted_share"], "top_mi": m["top_mi"], "learn_seconds": m["learn_seconds"],
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


def samples_job(section: Mapping[str, Any], mnist32: str, model_npz: str, out_npz: str) -> None:
    """Arrays for the figures: reconstructions from each level of some test images,
    samples per class, and predictive images along a mixture of two digits."""
    model = load_model(model_npz, section)
    fig = section["samples"]
    rng = np.random.default_rng(section["seed"])
    data = load_npz(mnist32)
    images = data["test_rgm"][:fig["n_reconstruct"]]
    codes = model.quantiser.encode(images)
    out = model.infer(codes)
    q = model.quantiser
    recon = [q.decode(codes)]                                                # the quantised input
    for level in range(1, model.n_structure_levels + 1):
        recon.append(q.decode_expected(model.predict_down(out["q"][level - 1], level)))
    n_classes = model.config.hierarchy.n_classes
    classes = np.repeat(np.arange(n_classes), fig["n_generate"])
    generated = q.decode(model.sample(classes, rng, modes_below_top=True))
    ancestral = q.decode(model.sample(np.arange(n_classes), rng))
    eye = np.eye(n_classes)
    top = model.n_structure_levels
    predictive = q.decode_expected(model.predict_down(model.class_to_top(eye), top))
    a, b = fig["mix_pair"]
    weights = np.linspace(0.0, 1.0, fig["mixing_steps"])
    mix = np.stack([(1 - w) * eye[a] + w * eye[b] for w in weights])
    mixing = q.decode_expected(model.predict_down(model.class_to_top(mix), top))
    save_npz_atomic(out_npz, originals=q.prepare(images), reconstructions=np.stack(recon), generated=generated,
                    generated_classes=classes, ancestral=ancestral, predictive=predictive, mixing=mixing,
                    mixing_weights=weights, mix_pair=np.array([a, b]))
