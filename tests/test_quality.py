"""Sample-quality maths: Frechet distance, FID from features, recognisability, IS, entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg

from rgbench.evaluation.quality import (class_histogram, entropy_nats, frechet_distance,
                                        gaussian_fit, inception_score, recognisable_fraction)


def test_frechet_distance_exact_one_dimensional():
    # N(0, 1) vs N(1, 4): (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == pytest.approx(2.0, abs=1e-12)


def test_frechet_distance_exact_diagonal():
    # |(0,0) - (1,2)|^2 = 5; tr = 5 + 13; tr sqrt(diag(4, 36)) = 2 + 6 -> 5 + 18 - 16 = 7
    d = frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([4.0, 9.0]))
    assert d == pytest.approx(7.0, abs=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_on_non_commuting_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + 0.5 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_singular_covariance_is_finite_and_zero_against_itself():
    # Fewer samples than dimensions: a rank-deficient covariance must not break the square root.
    feats = np.random.default_rng(1).normal(size=(4, 16))
    mu, sigma = gaussian_fit(feats)
    assert np.linalg.matrix_rank(sigma) < 16
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8))

    def fid(a: np.ndarray, b: np.ndarray) -> float:  # as the pipeline computes it from features
        return frechet_distance(*gaussian_fit(a), *gaussian_fit(b))

    assert fid(feats, feats) == pytest.approx(0.0, abs=1e-8)
    values = [fid(feats, feats + rng.normal(scale=s, size=feats.shape)) for s in (0.1, 0.5, 1.0, 3.0)]
    assert values[0] > 0
    assert all(later > earlier for earlier, later in zip(values, values[1:])), values


def test_recognisable_fraction_uses_a_strict_threshold():
    probs = np.array([[0.95, 0.05] + [0] * 8, [0.9, 0.1] + [0] * 8, [0.5, 0.5] + [0] * 8, [0.0, 1.0] + [0] * 8])
    assert recognisable_fraction(probs) == pytest.approx(0.5)
    assert recognisable_fraction(probs, threshold=0.4) == pytest.approx(1.0)


def test_histogram_entropy_and_inception_score_limits():
    balanced = np.eye(10)[np.arange(100) % 10]
    assert class_histogram(balanced).tolist() == [0.1] * 10
    assert entropy_nats(class_histogram(balanced)) == pytest.approx(math.log(10))
    assert inception_score(balanced) == pytest.approx(10.0, rel=1e-6)
    collapsed = np.eye(10)[np.zeros(50, dtype=int)]
    assert entropy_nats(class_histogram(collapsed)) == 0.0
    assert inception_score(collapsed) == pytest.approx(1.0)
    uniform = np.full((30, 10), 0.1)
    assert inception_score(uniform) == pytest.approx(1.0)
    assert recognisable_fraction(uniform) == 0.0
