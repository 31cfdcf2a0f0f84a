"""Train the reference MNIST classifier and the test-set feature statistics FID uses.

One job per seed (``runs/reference_classifier/seed-<s>/``); the first seed's classifier is
the yardstick of every sample-quality number, the others measure the accuracy's spread.
Outputs of one job:
- ``model.pt`` + ``model.pt.sha256``: the weights with their config, and their checksum;
- ``reference_stats.npz``: test-set feature mean/covariance (``mu``, ``sigma``), the
  weights' checksum, and for scale the FID floor (real train vs real test) and the FID
  of samples from independent-pixel models;
- ``metrics.json``: test accuracy, checksum, train seconds and those FIDs.

A hand-off with a ``probe`` block (the paper preset's probe) trains a few steps, cuts the
validation, test and FID loops to a few batches and marks the run ``probe`` in its
provenance.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rgbench.data.mnist import load_splits
from rgbench.evaluation.quality import (class_histogram, entropy_nats, frechet_distance, gaussian_fit,
                                        inception_score, recognisable_fraction)
from rgbench.evaluation.reference import (NUM_CLASSES, ReferenceClassifier, ReferenceCNN, ReferenceConfig,
                                          normalise, outlier_images, random_shift, save_reference_classifier,
                                          to_input)
from rgbench.config import build
from rgbench.io import file_sha256, save_npz_atomic
from rgbench.probe import capped, measured, probe_record_path, split_probe
from rgbench.results import provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit

log = get_logger("reference_classifier")

EXPERIMENT = "reference_classifier"


# The config keys that decide a run (the rule's hand-off, plus the run's seed).
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "max_shift", "channels1", "channels2", "hidden",
              "dropout", "outlier_fraction", "fid_samples")


@dataclass
class ReferenceTrainConfig:
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    max_shift: int
    channels1: int
    channels2: int
    hidden: int
    dropout: float
    outlier_fraction: float
    fid_samples: int

    def model_config(self) -> ReferenceConfig:
        return ReferenceConfig(self.channels1, self.channels2, self.hidden, self.dropout)


def accuracy(classifier: ReferenceClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    return float((classifier.predict(images) == labels).mean()) if len(labels) else float("nan")


def batch_loss(model: ReferenceCNN, x: torch.Tensor, y: torch.Tensor, cfg: ReferenceTrainConfig) -> torch.Tensor:
    """The training loss of one batch of normalised digits: shift augmentation, and outlier
    exposure (``outlier_fraction`` noise images per digit pushed towards the uniform class
    distribution; the term is KL(uniform || p(y|noise)) >= 0, cross-entropy minus ln 10)."""
    x = random_shift(x, cfg.max_shift)
    n_outliers = round(cfg.outlier_fraction * len(x))
    if n_outliers:
        x = torch.cat([x, normalise(outlier_images(n_outliers, x.device))])
    # channels-last convolutions: about 20% less CPU time per step on one thread (measured)
    logits = model(x.contiguous(memory_format=torch.channels_last))
    digits, outliers = logits[:len(y)], logits[len(y):]
    loss = F.cross_entropy(digits, y)
    if n_outliers:
        loss = loss - F.log_softmax(outliers, dim=1).mean(dim=1).mean() - math.log(NUM_CLASSES)
    return loss


def independent_pixel_samples(train_images: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    """Samples of two independent-pixel baselines fitted to the training images.

    ``marginal``: each pixel drawn from its own empirical 0..255 histogram (the maximum
    likelihood independent model); ``bernoulli``: each pixel black/white with
    probability its mean intensity.
    """
    rng = np.random.default_rng([seed, 1])
    flat = train_images.reshape(len(train_images), -1)
    pixels = flat.shape[1]
    marginal = np.empty((n, pixels), dtype=np.uint8)
    uniforms = rng.random((n, pixels))
    for p in range(pixels):
        cdf = np.cumsum(np.bincount(flat[:, p], minlength=256)) / len(flat)
        marginal[:, p] = np.minimum(np.searchsorted(cdf, uniforms[:, p], side="right"), 255)
    mean = flat.mean(axis=0) / 255.0
    bernoulli = (rng.random((n, pixels)) < mean).astype(np.float32)
    side = train_images.shape[1]
    return {"marginal": marginal.reshape(n, side, side), "bernoulli": bernoulli.reshape(n, side, side)}


def train_job(config: Mapping[str, Any], mnist28: str | os.PathLike, model_path: str | os.PathLike,
              stats_path: str | os.PathLike, metrics_path: str | os.PathLike, run_id: str,
              device: str = "auto") -> dict[str, Any]:
    """One classifier: train on the train split (validation accuracy after every epoch), then
    evaluate the test set once; write weights, checksum, FID statistics and metrics.json."""
    started = time.perf_counter()
    settings, probe = split_probe(config)
    cfg = build(ReferenceTrainConfig, settings)
    seed_everything(cfg.seed)
    dev = pick_device(device)
    splits = load_splits(mnist28)
    log.info("training on %d images, validating on %d, testing on %d (%s)", len(splits.train_labels),
             len(splits.val_labels), len(splits.test_labels), describe_device(dev))

    x_train = to_input(splits.train_images).to(dev)
    y_train = torch.from_numpy(splits.train_labels.astype(np.int64)).to(dev)
    model = ReferenceCNN(cfg.model_config()).to(dev).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(y_train) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                    steps_per_epoch=steps_per_epoch)
    classifier = ReferenceClassifier(model, device=dev)

    def make_batches(epoch: int) -> TensorBatches:
        return TensorBatches((x_train, y_train), cfg.batch_size, order=epoch_permutation(len(y_train), cfg.seed, epoch))

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return batch_loss(model, *batch, cfg)

    cpu_mark = [time.process_time()]

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        # Eval mode: no dropout, and BatchNorm's running statistics never see validation images.
        model.eval()
        n_val = capped(probe, len(splits.val_labels), cfg.batch_size)
        result = {"val_accuracy": accuracy(classifier, splits.val_images[:n_val], splits.val_labels[:n_val])}
        model.train()
        # CPU time of the epoch (validation included), kept in the checkpointed history so
        # that a resumed job still reports the whole training's CPU time
        now = time.process_time()
        result["cpu_seconds"], cpu_mark[0] = now - cpu_mark[0], now
        return result

    # The fingerprint makes a job rerun with other settings ignore a stale checkpoint.
    fingerprint = hashlib.sha256(json.dumps({**asdict(cfg), **({"probe": True} if probe is not None else {})},
                                            sort_keys=True).encode()).hexdigest()
    checkpoint = Path(model_path).parent / "checkpoint.pt"
    result = fit(model, optimizer, make_batches, loss_fn, cfg.epochs, checkpoint_path=checkpoint,
                 on_epoch_end=on_epoch_end, scheduler=scheduler, description="reference", fingerprint=fingerprint,
                 probe=probe)
    train_cpu_seconds = float(sum(h.extra["cpu_seconds"] for h in result.history))
    if result.diverged:
        raise RuntimeError("reference classifier training diverged (non-finite loss); lower the learning rate")
    model.eval()

    # a probe keeps eval_batches batches of the test and validation images and of each FID sample
    with measured(probe, "test"):
        n_test = capped(probe, len(splits.test_labels), cfg.batch_size)
        n_val = capped(probe, len(splits.val_labels), cfg.batch_size)
        test_images, test_labels = splits.test_images[:n_test], splits.test_labels[:n_test]
        test_probs = classifier.predict_proba(test_images)
        test_accuracy = float((test_probs.argmax(1) == test_labels).mean())
        val_accuracy = accuracy(classifier, splits.val_images[:n_val], splits.val_labels[:n_val])
    log.info("test accuracy %.4f (val %.4f) after %.1f s of training", test_accuracy, val_accuracy,
             result.train_seconds)
    digest = save_reference_classifier(model, model_path, extra={"test_accuracy": test_accuracy, "seed": cfg.seed})

    # FID scale: the same number of images in every comparison, since FID's bias depends on N.
    with measured(probe, "fid"):
        mu, sigma = gaussian_fit(classifier.features(test_images))
        n = capped(probe, min(cfg.fid_samples, len(splits.train_labels)), cfg.batch_size)
        pick = np.sort(np.random.default_rng([cfg.seed, 2]).choice(len(splits.train_labels), size=n, replace=False))
        fid_floor = frechet_distance(*gaussian_fit(classifier.features(splits.train_images[pick])), mu, sigma)
        baselines = independent_pixel_samples(splits.train_images, n, cfg.seed)
        baseline_numbers: dict[str, float] = {}
        for name, samples in baselines.items():
            probs = classifier.predict_proba(samples)
            feats = classifier.features(samples)
            baseline_numbers[f"fid_independent_{name}"] = frechet_distance(*gaussian_fit(feats), mu, sigma)
            baseline_numbers[f"recognisable_fraction_independent_{name}"] = recognisable_fraction(probs)
        noise = np.random.default_rng([cfg.seed, 3]).integers(0, 256, size=(min(n, 2000), 28, 28), dtype=np.uint8)
        baseline_numbers["recognisable_fraction_uniform_noise"] = recognisable_fraction(
            classifier.predict_proba(noise))
    log.info("FID floor (train vs test, n=%d) %.3f; baselines %s", n, fid_floor, baseline_numbers)
    save_npz_atomic(stats_path, mu=mu, sigma=sigma, n_test=np.int64(len(test_labels)),
                    n_floor=np.int64(n), fid_floor=np.float64(fid_floor),
                    fid_independent=np.float64(baseline_numbers["fid_independent_marginal"]),
                    fid_independent_bernoulli=np.float64(baseline_numbers["fid_independent_bernoulli"]),
                    model_sha256=np.str_(digest))

    test_histogram = class_histogram(test_probs)
    metrics = {
        "test_accuracy": test_accuracy,
        "val_accuracy": val_accuracy,
        "test_errors": int((test_probs.argmax(1) != test_labels).sum()),
        "train_seconds": result.train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "fid_floor": fid_floor,
        "fid_independent": baseline_numbers["fid_independent_marginal"],
        **baseline_numbers,
        "recognisable_fraction_test": recognisable_fraction(test_probs),
        "inception_score_test": inception_score(test_probs),
        "class_entropy_test": entropy_nats(test_histogram),
        "fid_samples": n,
        "sha256": digest,
    }
    record = write_metrics(
        metrics_path, experiment=EXPERIMENT, run_id=run_id, params={k: v for k, v in asdict(cfg).items() if k != "seed"},
        seed=cfg.seed, metrics=metrics, wall_seconds=time.perf_counter() - started, device=describe_device(dev),
        provenance=provenance(n_train=len(splits.train_labels), n_val=n_val, n_test=len(test_labels),
                              data_sha256=file_sha256(mnist28), n_params=sum(p.numel() for p in model.parameters()),
                              epochs_run=len(result.history),
                              steps_run=result.steps_run if probe is not None else None, probe=probe is not None),
        extra={"history": [vars(h) for h in result.history], "resumed_from_epoch": result.resumed_from_epoch,
               "test_class_histogram": test_histogram.tolist()},
    )
    checkpoint.unlink(missing_ok=True)  # finished: a forced rerun should train afresh
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device=describe_device(dev),
                    n_params=record["provenance"]["n_params"])
    return record
