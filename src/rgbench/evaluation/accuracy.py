"""Accuracy read against a model's own confidence: the RGM's ELBO ranks the images it is
sure of (the SPM demo's "upper median"), and accuracy per ELBO quantile shows how well
that ranking separates right from wrong answers.
"""

from __future__ import annotations

import numpy as np


def confident_half_accuracy(correct: np.ndarray, elbo: np.ndarray) -> float:
    """Accuracy on the images whose ELBO exceeds the median (the demo's "upper median");
    nan when no image does (every ELBO equal)."""
    upper = elbo > np.median(elbo)
    if not upper.any():
        return float("nan")
    return float(np.mean(correct[upper]))


def accuracy_by_elbo_quantile(correct: np.ndarray, elbo: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Accuracy within each of ``n_bins`` equal-count ELBO quantile bins (lowest ELBO first)."""
    order = np.argsort(elbo, kind="stable")
    return np.array([float(np.mean(correct[chunk])) for chunk in np.array_split(order, n_bins)])
