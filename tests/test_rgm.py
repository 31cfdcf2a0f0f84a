"""The discrete RGM: quantisation, structure learning, exact inference, Dirichlet learning."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rgbench.experiments.rgm import exemplars_reconstructed_exactly, model_config
from rgbench.models.rgm import RGM, RGMConfig, confident_half_accuracy, fit_quantiser

TINY = dict(image_size=4, group_size=2, block=2, max_modes=4, sv_threshold=0.01, n_bins=3, bin_width=0.8,
            n_classes=2, acceptance="all", top_k=8)


def tiny_images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 4, 4)).astype(np.uint8)


def tiny_model(seed: int = 0, **overrides) -> tuple[RGM, np.ndarray, np.ndarray]:
    config = RGMConfig(**{**TINY, **overrides})
    images = tiny_images(40, seed)
    quantiser = fit_quantiser(images, config)
    exemplars = quantiser.encode(images[:3])
    model = RGM(config, quantiser)
    model.learn_structure(exemplars, np.array([0, 1, 1]))
    return model, images, quantiser.encode(images)


def test_quantisation_round_trip_and_centring():
    config = RGMConfig(**TINY)
    images = tiny_images(200)
    q = fit_quantiser(images, config)
    codes = q.encode(images)
    assert codes.shape == (200, 4, 4) and codes.dtype == np.int8
    assert codes.min() >= 0 and codes.max() < config.n_bins
    # decoding a code and encoding it again gives the same code (orthonormal basis)
    np.testing.assert_array_equal(q.encode(q.decode(codes)), codes)
    # the mean patch sits in the bin centred on 0 for every mode
    mean_image = q.decode(np.full((1, 4, 4), config.n_bins // 2, dtype=np.int8))
    assert np.all(q.encode(mean_image) == config.n_bins // 2)
    # the basis is orthonormal over the kept modes
    for g in range(4):
        k = q.n_modes[g]
        np.testing.assert_allclose(q.basis[g, :k] @ q.basis[g, :k].T, np.eye(k), atol=1e-10)


def test_structure_learning_is_lossless_on_real_exemplars(mnist_cache_dir):
    from rgbench.io import load_npz

    data = load_npz(mnist_cache_dir / "mnist32_rgm.npz")
    index = load_npz(mnist_cache_dir / "subsets.npz")["exemplar_index"].reshape(-1)
    config = RGMConfig()
    q = fit_quantiser(data["train_rgm"][:1000], config)
    codes = q.encode(data["train_rgm"][index])
    labels = data["train_labels"][index]
    model = RGM(config, q)
    report = model.learn_structure(codes, labels)
    assert config.level_grids == [8, 4, 2, 1]
    assert [len(s) for s in report.n_states] == [64, 16, 4, 1]
    assert all(max(s) <= 130 for s in report.n_states)
    assert report.seconds < 5.0
    assert exemplars_reconstructed_exactly(model, codes, report.exemplar_top_state) == 1.0
    pred, elbo = model.classify(codes)
    np.testing.assert_array_equal(pred, labels)
    assert np.all(np.isfinite(elbo))


def brute_force(model: RGM, codes: np.ndarray) -> tuple[float, np.ndarray]:
    """log p(o) and q(class) by enumerating every joint state of the tiny 2-level model."""
    A, A_class = model.likelihoods()
    s1 = model.valid[0].sum(axis=1)
    s2 = int(model.valid[1].sum())
    joint = np.zeros(model.config.n_classes)
    g, m = model.mode_mask.shape
    for c in range(model.config.n_classes):
        for top in range(s2):
            for states in itertools.product(*[range(k) for k in s1]):
                p = A_class[c, top] / model.config.n_classes
                for b, s in enumerate(states):
                    p *= A[1][0, top, b, s]
                    for k in range(int(model.quantiser.n_modes[b])):
                        p *= A[0][b, s, k, codes[b, k]]
                joint[c] += p
    return float(np.log(joint.sum())), joint / joint.sum()


def test_message_passing_is_exact_on_a_tiny_tree():
    model, _, codes = tiny_model()
    assert model.config.level_grids == [2, 1]
    for i in (0, 5, 17):
        out = model.infer(codes[i:i + 1])
        log_evidence, q_class = brute_force(model, codes[i])
        assert out["elbo"][0] == pytest.approx(log_evidence, abs=1e-9)
        np.testing.assert_allclose(out["q_class"][0], q_class, atol=1e-9)
        for q in out["q"]:
            np.testing.assert_allclose(q.sum(axis=2), 1.0, atol=1e-12)


def test_dirichlet_update_arithmetic():
    model, _, codes = tiny_model()
    cfg = model.config
    # the prior: concentration x one-hot structure + concentration x floor
    q, floor = cfg.concentration, cfg.concentration * cfg.prior_floor
    assert set(np.unique(model.a[0][model.a[0] > 0]).round(12)) <= {round(q + floor, 12), round(floor, 12)}
    assert model.a_class[0, 0] == pytest.approx(cfg.top_concentration * (1 + cfg.prior_floor))
    before = [a.copy() for a in model.a] + [model.a_class.copy()]
    x, y = codes[7:8], np.array([1])
    post = model.infer(x, class_prior=np.eye(2)[y])
    q1, q2 = post["q"][0][0], post["q"][1][0]
    out = model.learn_stream(x, y)
    assert out["accepted"].tolist() == [True]
    keep = lambda v: np.where(v > cfg.tol, v, 0.0)  # noqa: E731
    # level 1: the observed bin of each mode gains q(level-1 state)
    expected = before[0].copy()
    for g in range(4):
        for k in range(int(model.quantiser.n_modes[g])):
            expected[g, :, k, x[0, g, k]] += keep(q1[g])
    np.testing.assert_allclose(model.a[0], expected, atol=1e-12)
    # level 2: child states x parent state, an outer product of the marginals
    expected = before[1] + np.einsum("s,bc->sbc", keep(q2[0]), keep(q1))[None]
    np.testing.assert_allclose(model.a[1], expected, atol=1e-12)
    # class map: the clamped class gains q(top)
    expected = before[2].copy()
    expected[1] += keep(q2[0])
    np.testing.assert_allclose(model.a_class, expected, atol=1e-12)


def test_efe_acceptance_and_rejected_updates_leave_no_trace():
    model, _, codes = tiny_model(acceptance="efe", stochastic_acceptance=False, beta=512.0)
    labels = np.arange(len(codes)) % 2
    mi_before = model.mutual_information()
    out = model.learn_stream(codes[:12], labels[:12])
    assert np.array_equal(out["accepted"], out["delta_g"] < 0)
    np.testing.assert_allclose(out["delta_g"], -(out["delta_f"] + 512.0 * out["delta_mi"]))
    assert np.all(out["delta_f"] >= -1e-9)          # counts from an image never lower its evidence
    assert 0 < out["accepted"].sum() < 12
    # replaying only the accepted images with acceptance "all" gives the same model, so a
    # rejected update left nothing behind; the mutual information adds up
    replay, _, _ = tiny_model(acceptance="all")
    replay.learn_stream(codes[:12][out["accepted"]], labels[:12][out["accepted"]])
    for a, b in zip(model.a, replay.a):
        np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(model.likelihoods()[0][1], replay.likelihoods()[0][1], atol=1e-12)
    assert model.mutual_information() == pytest.approx(mi_before + out["delta_mi"][out["accepted"]].sum(), abs=1e-9)


def test_reproducible_with_a_seed_and_shapes():
    runs = []
    for _ in range(2):
        model, _, codes = tiny_model(acceptance="efe", stochastic_acceptance=True, beta=50.0)
        out = model.learn_stream(codes, np.arange(len(codes)) % 2, seed=3)
        runs.append((out["accepted"], model.a_class.copy()))
        sample = model.sample([0, 1, 1], np.random.default_rng(0))
        assert sample.shape == (3, 4, 4)
        pred = model.predict_down(model.class_to_top(np.eye(2)), 2)
        assert pred.shape == (2, 4, 4, 3)
        np.testing.assert_allclose(pred[:, :, 0].sum(axis=-1), 1.0)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_confident_half_and_config_errors():
    correct = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    elbo = np.array([5.0, -3.0, 4.0, 2.0, -1.0, 0.0])
    assert confident_half_accuracy(correct, elbo) == 1.0
    with pytest.raises(ValueError, match="odd"):
        RGMConfig(n_bins=6)
    with pytest.raises(ValueError, match="multiple"):
        RGMConfig(image_size=30)
    section = {"hierarchy": {"image_size": 32, "group_size": 4, "block": 2, "n_levels": 3}, "learning": {}}
    with pytest.raises(ValueError, match="n_levels"):
        model_config(section)
    with pytest.raises(ValueError, match="unknown"):
        RGMConfig.from_spec({"levels": 4})
