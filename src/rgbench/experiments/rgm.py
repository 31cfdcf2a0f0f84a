"""RGM jobs: train (SVD quantiser, structure learning, active learning), evaluate a
protocol, draw samples and reconstructions. Scripts in scripts/rgm_*.py call these.

Each job takes its rule's hand-off: a mapping with the ``rgm:`` keys that decide its
outputs (``seed``, ``hierarchy``, ``learning``, ``data``, ``inference``, ``samples``)."""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

import numpy as np

from rgbench.io import file_sha256, load_npz, read_json, save_npz_atomic, write_json_atomic
from rgbench.models.rgm import (RGM, RGMConfig, accuracy_by_elbo_quantile, confident_half_accuracy,
                                fit_quantiser)
from rgbench.results import provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, progress

log = get_logger("rgm")

PROTOCOLS = ("official_test", "paper_slice")


def model_config(section: Mapping[str, Any]) -> RGMConfig:
    """The RGMConfig from the ``rgm:`` config section (hierarchy spec + learning)."""
    spec = dict(section["hierarchy"])
    n_levels = spec.pop("n_levels")
    config = RGMConfig.from_spec({**spec, **section["learning"]})
    if len(config.level_grids) != n_levels:
        raise ValueError(f"hierarchy.n_levels is {n_levels} but image_size / group_size / block give "
                         f"{len(config.level_grids)} levels {config.level_grids}")
    return config


def stream_indices(section: Mapping[str, Any], n_train: int) -> np.ndarray:
    start, size = section["data"]["stream_start"], section["data"]["stream_size"]
    if start + size > n_train:
        raise ValueError(f"stream {start}:{start + size} runs past the {n_train} training images")
    return np.arange(start, start + size)


def train_job(section: Mapping[str, Any], mnist32: str, subsets: str, out_dir: str | os.PathLike) -> dict[str, Any]:
    """SVD quantiser on the stream images, structure learning on the exemplars, active
    learning over the stream. Writes model.npz, stream.npz and fit.json in ``out_dir``."""
    started = time.perf_counter()
    config = model_config(section)
    data = load_npz(mnist32)
    images, labels = data["train_rgm"], data["train_labels"]
    exemplars = load_npz(subsets)["exemplar_index"]
    per_class = section["data"]["exemplars_per_class"]
    if per_class > exemplars.shape[1]:
        raise ValueError(f"{per_class} exemplars per class asked, the subsets cache holds {exemplars.shape[1]}")
    exemplars = exemplars[:, :per_class].reshape(-1)
    stream = stream_indices(section, len(images))

    t0 = time.perf_counter()
    quantiser = fit_quantiser(images[stream], config)
    svd_seconds = time.perf_counter() - t0
    codes_ex = quantiser.encode(images[exemplars])
    model = RGM(config, quantiser)
    report = model.learn_structure(codes_ex, labels[exemplars])
    log.info("structure learning: %.3f s, states per level (max) %s, top states %d",
             report.seconds, [max(s) for s in report.n_states], report.top_states)

    # losslessness: generating from each exemplar's top state (the mode at every level)
    # must give back its codes exactly, and the exemplars must be classified correctly
    exact = exemplars_reconstructed_exactly(model, codes_ex, report.exemplar_top_state)
    pred_ex, _ = model.classify(codes_ex)
    structure_exemplar_accuracy = float(np.mean(pred_ex == labels[exemplars]))
    log.info("exemplars reconstructed exactly: %.3f, classified: %.3f", exact, structure_exemplar_accuracy)

    codes_stream = quantiser.encode(images[stream])
    t0 = time.perf_counter()
    learned = model.learn_stream(codes_stream, labels[stream], seed=section["seed"],
                                 progress=lambda it: progress(it, desc="rgm active learning", unit="img"))
    learn_seconds = time.perf_counter() - t0
    pred_ex, _ = model.classify(codes_ex)
    accepted = learned["accepted"]
    log.info("active learning: %.1f s, accepted %.3f of %d", learn_seconds, accepted.mean(), len(accepted))

    out = os.fspath(out_dir)
    save_npz_atomic(f"{out}/model.npz", **model.arrays())
    save_npz_atomic(f"{out}/stream.npz", accepted=accepted, delta_g=learned["delta_g"], index=stream,
                    labels=labels[stream])
    summary = {
        "svd_seconds": svd_seconds,
        "structure_seconds": report.seconds,
        "learn_seconds": learn_seconds,
        "n_exemplars": int(len(exemplars)),
        "n_train": int(len(stream)),
        "accepted_fraction": float(accepted.mean()),
        "states_per_level": report.n_states,
        "top_states": report.top_states,
        "modes_per_group": quantiser.n_modes.tolist(),
        "exemplars_exact": exact,
        "exemplar_accuracy_structure": structure_exemplar_accuracy,
        "exemplar_accuracy_learned": float(np.mean(pred_ex == labels[exemplars])),
        "wall_seconds": time.perf_counter() - started,
    }
    write_json_atomic(f"{out}/fit.json", summary)
    return summary


def exemplars_reconstructed_exactly(model: RGM, codes: np.ndarray, top_states: np.ndarray) -> float:
    """Fraction of exemplars whose codes are recovered exactly by taking the most likely
    state at every level, top-down from the exemplar's own top state."""
    A, _ = model.likelihoods()
    states = top_states[:, None]
    for level in range(model.n_levels - 1, 0, -1):
        children = model.children[level - 1]
        cols = A[level][np.arange(len(children))[None, :], states]           # (N, P, B, S_c)
        below = np.zeros((len(codes), model.valid[level - 1].shape[0]), dtype=np.int64)
        below[:, children] = cols.argmax(axis=3)
        states = below
    bins = A[0][np.arange(states.shape[1])[None, :], states].argmax(axis=3)  # (N, G, M)
    kept = model.mode_mask.astype(bool)[None]                                # padded modes hold no bins
    return float(np.mean(np.all((bins == codes) | ~kept, axis=(1, 2))))


def load_model(model_npz: str, section: Mapping[str, Any]) -> RGM:
    return RGM.from_arrays(model_config(section), load_npz(model_npz))


def protocol_split(protocol: str, data: Mapping[str, np.ndarray],
                   section: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """Test images, labels and a description of a protocol."""
    d = section["data"]
    if protocol == "official_test":
        images, labels = data["test_rgm"], data["test_labels"]
        size = d["test_limit"] or len(images)
        return images[:size], labels[:size], f"official test images 1-{min(size, len(images))}"
    if protocol == "paper_slice":
        start, size = d["slice_start"], d["slice_size"]
        stream_end = d["stream_start"] + d["stream_size"]
        if start < stream_end and start + size > d["stream_start"]:
            raise ValueError(f"paper_slice {start}:{start + size} overlaps the training stream")
        if start + size > len(data["train_rgm"]):
            raise ValueError(f"paper_slice {start}:{start + size} runs past the "
                             f"{len(data['train_rgm'])} training images")
        return (data["train_rgm"][start:start + size], data["train_labels"][start:start + size],
                f"training images {start + 1}-{start + size}")
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def evaluate_job(section: Mapping[str, Any], mnist32: str, model_npz: str, fit_json: str, metrics_json: str,
                 scores_npz: str) -> dict[str, Any]:
    """Classify a protocol's test images (``section["protocol"]``): accuracy,
    confident-half accuracy, ELBO."""
    started = time.perf_counter()
    protocol = section["protocol"]
    model = load_model(model_npz, section)
    summary = read_json(fit_json)
    images, labels, described = protocol_split(protocol, load_npz(mnist32), section)
    codes = model.quantiser.encode(images)
    t0 = time.perf_counter()
    pred, elbo = model.classify(codes, batch=section["inference"]["batch"],
                                progress=lambda it: progress(it, desc=f"rgm {protocol}", unit="batch"))
    infer_seconds = time.perf_counter() - t0
    correct = pred == labels
    quantiles = accuracy_by_elbo_quantile(correct, elbo, 10)
    save_npz_atomic(scores_npz, pred=pred, labels=labels, elbo=elbo, correct=correct)
    metrics = {
        "protocol": protocol,
        "test_set": described,
        "test_accuracy": float(correct.mean()),
        "confident_half_accuracy": confident_half_accuracy(correct, elbo),
        "mean_elbo": float(elbo.mean()),
        "structure_seconds": summary["structure_seconds"],
        "learn_seconds": summary["learn_seconds"],
        "infer_seconds": infer_seconds,
        "accepted_fraction": summary["accepted_fraction"],
        "top_states": summary["top_states"],
        "exemplars_exact": summary["exemplars_exact"],
        "exemplar_accuracy": summary["exemplar_accuracy_structure"],
    }
    log.info("%s: accuracy %.4f, confident half %.4f on %d images", protocol, metrics["test_accuracy"],
             metrics["confident_half_accuracy"], len(labels))
    write_metrics(metrics_json, experiment="rgm", run_id=protocol, params={}, seed=section["seed"],
                  metrics=metrics, wall_seconds=time.perf_counter() - started + summary["wall_seconds"],
                  device=describe_device("cpu"),
                  provenance=provenance(n_train=summary["n_train"], n_val=0, n_test=len(labels),
                                        data_sha256=file_sha256(mnist32), n_params=None),
                  extra={"accuracy_by_elbo_decile": quantiles.tolist(),
                                        "states_per_level": summary["states_per_level"]})
    return metrics


def samples_job(section: Mapping[str, Any], mnist32: str, model_npz: str, out_npz: str) -> None:
    """Arrays for the figures: reconstructions from each level of some test images,
    samples per class, and predictive images along a mixture of two digits."""
    model = load_model(model_npz, section)
    fig = section["samples"]
    rng = np.random.default_rng(section["seed"])
    data = load_npz(mnist32)
    n_rec = fig["n_reconstruct"]
    images = data["test_rgm"][:n_rec]
    codes = model.quantiser.encode(images)
    out = model.infer(codes)
    recon = [model.quantiser.decode(codes)]                                   # quantised input
    for level in range(1, model.n_levels + 1):
        recon.append(model.quantiser.decode_expected(model.predict_down(out["q"][level - 1], level)))
    classes = np.repeat(np.arange(model.config.n_classes), fig["n_generate"])
    generated = model.quantiser.decode(model.sample(classes, rng, modes_below_top=True))
    ancestral = model.quantiser.decode(model.sample(classes[::fig["n_generate"]], rng))
    eye = np.eye(model.config.n_classes)
    predictive = model.quantiser.decode_expected(model.predict_down(model.class_to_top(eye), model.n_levels))
    a, b = fig["mix_pair"]
    weights = np.linspace(0.0, 1.0, fig["mixing_steps"])
    mix = np.stack([(1 - w) * eye[a] + w * eye[b] for w in weights])
    mixing = model.quantiser.decode_expected(model.predict_down(model.class_to_top(mix), model.n_levels))
    save_npz_atomic(out_npz, originals=model.quantiser.prepare(images), reconstructions=np.stack(recon),
                    generated=generated, generated_classes=classes, ancestral=ancestral, predictive=predictive,
                    mixing=mixing, mixing_weights=weights, mix_pair=np.array([a, b]))
