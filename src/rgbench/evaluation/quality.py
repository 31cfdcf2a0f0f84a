"""Sample-quality metrics through the reference classifier.

- ``fid``: Frechet distance between Gaussian fits of the classifier's penultimate
  features on the samples and on the MNIST test set (an MNIST analogue of FID; its
  scale is set by the floor, real train vs real test, saved with the test statistics).
- ``recognisable_fraction``: share of samples whose top class probability exceeds 0.9.
- ``class_histogram`` / ``class_entropy``: the predicted-class distribution and its
  entropy in nats (ln 10 = 2.303 when every digit is produced equally often).
- ``inception_score``: exp(E_x KL(p(y|x) || p(y))), between 1 and 10.
- ``conditional_recognition``: share of class-conditional samples classified as intended.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rgbench.io import load_npz

NUM_CLASSES = 10


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    matrix = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr sqrt(sigma1 sigma2) is computed as tr sqrt(A sigma2 A) with A = sqrt(sigma1): that
    matrix is symmetric PSD, so its square root comes from an eigendecomposition with
    no complex round-off, and singular covariances (fewer samples than features) are fine.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)  # round-off can leave a tiny negative for identical inputs


def recognisable_fraction(probs: np.ndarray, threshold: float = 0.9) -> float:
    """Share of rows whose top class probability is strictly above ``threshold``."""
    probs = _check_probs(probs)
    return float((probs.max(axis=1) > threshold).mean()) if len(probs) else float("nan")


def class_histogram(probs: np.ndarray) -> np.ndarray:
    """Fraction of samples assigned (argmax) to each of the 10 classes."""
    probs = _check_probs(probs)
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).astype(np.float64)
    return counts / max(len(probs), 1)


def entropy_nats(distribution: np.ndarray) -> float:
    p = np.asarray(distribution, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """exp(mean_x KL(p(y|x) || p(y))) with p(y) the mean prediction: 1 (uninformative) .. 10."""
    probs = _check_probs(probs)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = (probs * (np.log(probs + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"expected (N, classes) probabilities, got shape {probs.shape}")
    return probs


def load_reference_stats(path: str | os.PathLike) -> dict[str, Any]:
    """The test-set feature statistics (``mu``, ``sigma``) and scale numbers saved by training."""
    stats = load_npz(path)
    for key in ("mu", "sigma"):
        if key not in stats:
            raise KeyError(f"{path}: no {key!r}; not a reference_stats.npz written by the reference_classifier rule")
    return stats


def sample_quality(classifier: Any, samples: np.ndarray, reference_stats_path: str | os.PathLike) -> dict[str, Any]:
    """Every unconditional sample-quality number for (N, 28, 28) or (N, 32, 32) samples.

    Returns ``fid``, ``recognisable_fraction``, ``class_entropy`` (nats),
    ``inception_score``, ``class_histogram`` (list of 10 fractions) and ``n_samples``.
    FID is biased upwards for small N; compare sets of equal size (the floor in the
    stats file used ``n_floor`` images).
    """
    stats = load_reference_stats(reference_stats_path)
    expected = str(stats["model_sha256"]) if "model_sha256" in stats else None
    actual = getattr(classifier, "sha256", None)
    if expected and actual and expected != actual:
        raise ValueError(f"{reference_stats_path} was computed with reference weights {expected[:12]}, "
                         f"but the classifier passed has weights {actual[:12]}; re-run the reference_classifier rule")
    probs = classifier.predict_proba(samples)
    feats = classifier.features(samples)
    histogram = class_histogram(probs)
    return {
        "fid": frechet_distance(*gaussian_fit(feats), stats["mu"], stats["sigma"]),
        "recognisable_fraction": recognisable_fraction(probs),
        "class_entropy": entropy_nats(histogram),
        "inception_score": inception_score(probs),
        "class_histogram": histogram.tolist(),
        "n_samples": int(len(probs)),
    }


def conditional_recognition(classifier: Any, samples: np.ndarray, intended_labels: np.ndarray) -> float:
    """Share of samples that the reference classifier assigns to their intended class."""
    intended = np.asarray(intended_labels).reshape(-1)
    if len(intended) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(intended)} intended labels")
    if len(intended) == 0:
        return float("nan")
    return float((classifier.predict_proba(samples).argmax(axis=1) == intended).mean())
