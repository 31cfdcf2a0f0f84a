"""The discrete RGM: preprocessing, quantisation, structure learning, the demo's forward
inference, exact inference, Dirichlet learning with the MI gate and forgetting."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest
from scipy import ndimage, special

from rgbench.config import ConfigError, build, default_config
from rgbench.data.preprocess import ordinal_ranks, smooth
from rgbench.evaluation.accuracy import accuracy_by_elbo_quantile, confident_half_accuracy
from rgbench.evaluation.stats import binomial_se
from rgbench.experiments.rgm import (FIT_SET_CHOICES, MODEL_KEYS, PROTOCOL_FITS, PROTOCOL_IMAGES, AblationRun,
                                     AblationTableConfig, EvaluationData, EvaluationRun, FitRecipe, FitRun, FittedRun,
                                     SamplesConfig, SamplesRun, SplitData, StreamData, evaluation_split, merge)
from rgbench.models.rgm import RGM
from rgbench.models.rgm_config import HierarchyConfig, InferenceConfig, LearningConfig, QuantiserConfig, RGMConfig
from rgbench.models.rgm_quantiser import fit_quantiser, make_groups
from rgbench.models.rgm_tensors import Tensors


def settings(**changes) -> dict:
    """The default rgm model settings with ``changes`` ({"quantiser": {...}, ...}) merged in."""
    section = default_config()["rgm"]
    return merge({key: section[key] for key in MODEL_KEYS}, changes)


def real_counts(t: Tensors) -> np.ndarray:
    """The counts a family stands for: its stored counts times their scale, spare entries dropped."""
    P, B, R, S = t.shape
    return t.a[:, :, :R, :S] * t.scale[:, :, None, None]


TINY = {"quantiser": {"image_size": 8, "tile": 4, "tiling": "square", "max_modes": 3, "n_bins": 3},
        "hierarchy": {"l1_block": 1, "n_classes": 2}}


def tiny_model(seed: int = 0, n_exemplars: int = 4, **changes) -> tuple[RGM, np.ndarray]:
    config = build(RGMConfig, merge(settings(**copy.deepcopy(TINY)), changes))
    rng = np.random.default_rng(seed)
    images = rng.permutation(np.tile(np.arange(1, 65, dtype=np.uint16), (60, 1)).T).T.reshape(60, 8, 8)
    quantiser = fit_quantiser(images, config.quantiser)
    codes = quantiser.encode(images)
    model = RGM(config, quantiser)
    model.learn_structure(codes[:n_exemplars], np.arange(n_exemplars) % 2)
    return model, codes


# -- preprocessing -------------------------------------------------------------------


def test_ordinal_ranks_break_ties_in_column_major_order():
    image = np.array([[[0.0, 0.0], [5.0, 0.0]]])
    # column-major order: (0,0)=0, (1,0)=5, (0,1)=0, (1,1)=0 -> ties 0,0,0 ranked 1,2,3 in that order
    assert ordinal_ranks(image).tolist() == [[[1, 2], [4, 3]]]
    assert ordinal_ranks(image).dtype == np.uint16


def test_smoothing_matches_spm_conv_mirror_padding():
    sigma = 2.0 / math.sqrt(8.0 * math.log(2.0))   # FWHM 2 px, as config's smoothing_sigma
    assert sigma == pytest.approx(0.8493, abs=1e-4)
    rng = np.random.default_rng(0)
    image = rng.random((1, 9, 9))
    radius = int(6 * sigma)                       # spm_conv: fix(6 sigma) = 5
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    padded = np.pad(image[0], radius, mode="symmetric")   # MATLAB's flipud(u(1:E)) repeats the edge pixel
    expected = ndimage.convolve1d(ndimage.convolve1d(padded, kernel, axis=0), kernel, axis=1)[radius:-radius, radius:-radius]
    np.testing.assert_allclose(smooth(image, sigma, "reflect")[0], expected, atol=1e-12)


# -- quantisation ----------------------------------------------------------------------


def test_rbf_groups_follow_spm_tile():
    config = build(QuantiserConfig, settings()["quantiser"])
    groups = make_groups(config)
    assert groups.grid == 8 and len(groups.size) == 64
    assert groups.size.min() == 73 and groups.size.max() == 193       # corner and interior groups
    totals = np.zeros(32 * 32)
    for g in range(64):
        np.add.at(totals, groups.pixels[g, :groups.size[g]], groups.weights[g, :groups.size[g]])
    assert totals.max() <= 1 + 1e-12 and totals.min() > 0.998        # per-pixel weights sum to 1 (less what lies past radius 8)
    square = make_groups(dataclasses.replace(config, tiling="square"))
    covered = np.sort(np.concatenate([square.pixels[g, :square.size[g]] for g in range(64)]))
    np.testing.assert_array_equal(covered, np.arange(1024))            # a partition


def test_spm_mode_rule_and_maxabs_bins():
    rng = np.random.default_rng(1)
    config = build(QuantiserConfig, merge(settings()["quantiser"], {"image_size": 8, "tiling": "square"}))
    # each 4x4 tile: two strong directions plus small noise
    base = rng.normal(size=(2, 16))
    coef = rng.normal(size=(500, 4, 2)) * [3.0, 2.0]
    tiles = coef @ base + 0.01 * rng.normal(size=(500, 4, 16))
    images = tiles.reshape(500, 2, 2, 4, 4).transpose(0, 1, 3, 2, 4).reshape(500, 8, 8)
    q = fit_quantiser(images, config)
    for g in range(4):
        y = images.reshape(500, -1)[:, q.groups.pixels[g, :16]]
        lam = np.sort(np.linalg.eigvalsh(y.T @ y))[::-1]
        assert q.n_modes[g] == np.sum(lam * 3 * 16 / lam.sum() > 1 / 8) == 2
    # bins centred on 0, the extreme variate of the fit set lands in an end bin
    kept = np.arange(q.basis.shape[1])[None, :] < q.n_modes[:, None]
    assert np.allclose((q.low + q.step * (config.n_bins // 2))[kept], 0.0)
    codes = q.encode(images)
    for g in range(4):
        for k in range(q.n_modes[g]):
            assert {0, config.n_bins - 1} & set(np.unique(codes[:, g, k]))


# -- structure learning ----------------------------------------------------------------


def test_structure_learning_is_lossless_on_real_exemplars(mnist_cache_dir):
    from rgbench.io import load_npz

    data = load_npz(mnist_cache_dir / "mnist32_rgm.npz")
    index = load_npz(mnist_cache_dir / "subsets.npz")["exemplar_index"].reshape(-1)
    config = build(RGMConfig, settings(hierarchy={"l1_block": 2}))          # the demo's 3 structure levels
    q = fit_quantiser(data["train_rgm"][:1000], config.quantiser)
    codes = q.encode(data["train_rgm"][index])
    labels = data["train_labels"][index]
    model = RGM(config, q)
    report = model.learn_structure(codes, labels)
    assert config.level_sides == [4, 2, 1]
    assert [len(s) for s in report.n_states] == [16, 4, 1]
    assert all(max(s) <= 130 for s in report.n_states) and report.top_states == 130
    # lossless: from each exemplar's top state (130 distinct exemplars, so states in order of
    # first appearance: exemplar e has top state e), the most likely state of every factor
    # below and the most likely bin of every outcome give back its own codes
    A = [t.expected() for t in model.levels]
    kept = np.arange(q.basis.shape[1])[None, :] < q.n_modes[:, None]
    for e in range(130):
        states = np.array([e])
        for level in range(2, 0, -1):
            kids = model.children[level - 1]
            below = np.zeros(kids.size, dtype=np.int64)
            for p in range(kids.shape[0]):
                below[kids[p]] = A[level][p, :, :, states[p]].argmax(axis=1)
            states = below
        bins = np.full(codes[e].shape, -1)
        for f, k in zip(*np.nonzero(model.mod_valid)):
            bins[model.mod_group[f, k], model.mod_mode[f, k]] = A[0][f, k, :, states[f]].argmax()
        assert np.all((bins == codes[e]) | ~kept)
    out = model.classify(codes)
    np.testing.assert_array_equal(out["pred"], labels)


# -- inference ---------------------------------------------------------------------------


def brute_force(model: RGM, codes: np.ndarray) -> tuple[float, np.ndarray]:
    """log p(o) and q(class) by enumerating every joint state of the tiny 2-level model."""
    A = [t.expected() for t in model.levels]
    s1 = model.n_states[0]
    s2 = int(model.n_states[1][0])
    mod = model.modality_codes(codes[None])[0]
    joint = np.zeros(model.config.hierarchy.n_classes)
    for c in range(len(joint)):
        for top in range(s2):
            for states in itertools.product(*[range(k) for k in s1]):
                p = A[-1][0, 0, top, c] / len(joint)
                for f, s in enumerate(states):
                    p *= A[1][0, f, s, top]
                    for k in np.flatnonzero(model.mod_valid[f]):
                        p *= A[0][f, k, mod[f, k], s]
                joint[c] += p
    return float(np.log(joint.sum())), joint / joint.sum()


def test_exact_inference_matches_enumeration_on_a_tiny_tree():
    model, codes = tiny_model()
    assert model.config.level_sides == [2, 1]
    for i in (0, 7, 33):
        out = model.infer_exact(codes[i:i + 1])
        log_evidence, q_class = brute_force(model, codes[i])
        assert out["elbo"][0] == pytest.approx(log_evidence, abs=1e-9)
        np.testing.assert_allclose(out["q_class"][0], q_class, atol=1e-9)
        for q in out["q"]:
            np.testing.assert_allclose(q.sum(axis=2), 1.0, atol=1e-12)


def reference_forward(model: RGM, codes: np.ndarray, prune: float | None) -> tuple[np.ndarray, list[float]]:
    """spm_VBX written out one modality at a time: the class posterior and each level's summed log Z."""
    A = [t.expected() for t in model.levels]
    n_classes = model.config.hierarchy.n_classes
    d_class = np.append(np.full(n_classes, 1.0 / n_classes), 0.0)
    d_top = A[-1][0, 0] @ d_class
    thr = math.exp(-prune) if prune else 0.0
    F = [0.0, 0.0, 0.0]
    level = 0

    def update(p: np.ndarray, lik: np.ndarray) -> np.ndarray:
        p = np.where(p > thr, p, 0.0) * np.maximum(lik, math.exp(-32))
        F[level] += max(math.log(p.sum()), -32)
        return p / p.sum()

    mod = model.modality_codes(codes[None])[0]
    posts = []
    for f in range(len(model.mod_valid)):
        p = A[1][0, f] @ d_top                                     # the prior predicted from the parent's prior
        for k in np.flatnonzero(model.mod_valid[f]):
            p = update(p, A[0][f, k, mod[f, k]])
        posts.append(p)
    level = 1
    p = d_top
    for f, child in enumerate(posts):
        p = update(p, child @ A[1][0, f])                           # ln(A' q) of each child in turn
    level = 2
    q_class = update(d_class, p @ A[-1][0, 0])
    return q_class[:-1], F


@pytest.mark.parametrize("prune", [8.0, 2.0, None])
def test_forward_inference_is_spm_vbx_one_modality_at_a_time(prune):
    model, codes = tiny_model(inference={"prune": prune})
    batch = model.infer_forward(codes[:20])
    for i in range(20):
        q_class, F = reference_forward(model, codes[i], prune)
        np.testing.assert_allclose(batch["q_class"][i], q_class, atol=1e-12)
        np.testing.assert_allclose(batch["elbo_levels"][i], F, atol=1e-9)
        assert batch["elbo"][i] == pytest.approx(F[1] + F[2], abs=1e-9)   # the demo's: top structure level + class
        single = model.infer_forward(codes[i:i + 1])
        np.testing.assert_allclose(single["q"][0][0], batch["q"][0][i], atol=1e-12)


def test_forward_without_pruning_gives_the_exact_level1_posterior_under_its_prior():
    model, codes = tiny_model(inference={"prune": None})
    out = model.infer_forward(codes[:5])
    A = [t.expected() for t in model.levels]
    prior = model.top_down_priors(model._pad_classes(None, 5))[0]
    mod = model.modality_codes(codes[:5])
    for i in range(5):
        for f in range(len(model.mod_valid)):
            lik = np.prod([A[0][f, k, mod[i, f, k]] for k in np.flatnonzero(model.mod_valid[f])], axis=0)
            expected = prior[i, f] * lik
            np.testing.assert_allclose(out["q"][0][i, f], expected / expected.sum(), atol=1e-12)


# -- learning ----------------------------------------------------------------------------


def direct_mi(a: np.ndarray) -> float:
    p = a / a.sum()
    return float(-special.entr(p).sum() + special.entr(p.sum(axis=0)).sum() + special.entr(p.sum(axis=1)).sum())


def test_gate_and_forgetting_arithmetic_and_running_sums():
    rng = np.random.default_rng(0)
    a0 = rng.random((2, 3, 4, 5)) + 0.05
    t = Tensors(a0.copy(), np.ones((2, 3, 4), bool), np.ones((2, 5), bool))
    real = a0.copy()
    for step in range(40):
        rows = rng.integers(0, 4, size=(2, 3, 2))
        rows[..., 1] = 4                                        # padding: the spare row, weight 0
        u = np.stack([np.ones((2, 3)), np.zeros((2, 3))], axis=-1)
        cols = np.stack([rng.permutation(5)[:3] for _ in range(2)])
        v = rng.dirichlet(np.ones(3), size=2)
        cols_b, v_b = np.broadcast_to(cols[:, None], (2, 3, 3)), np.broadcast_to(v[:, None], (2, 3, 3))
        expected = real.copy()
        for p in range(2):
            for b in range(3):
                d = np.zeros((4, 5))
                d[rows[p, b, 0], cols[p]] += v[p]
                gain = direct_mi(real[p, b] + d) - direct_mi(real[p, b])
                w = special.expit(512.0 * gain)
                expected[p, b] = (real[p, b] + w * d) * 512.0 / (512.0 + w)
        w = t.update(rows, u, cols_b, v_b, "tensor_mi", 512.0, 512.0, np.ones((2, 3), bool))
        assert np.all((w >= 0) & (w <= 1))
        real = expected
        np.testing.assert_allclose(real_counts(t), real, rtol=1e-9)
        if step == 20:
            t.scale *= 1e-7                                     # force the fold of the scale into the counts
            real *= 1e-7
            t.fold_scale()
        np.testing.assert_allclose(t.mutual_information(), [[direct_mi(real[p, b]) for b in range(3)]
                                                            for p in range(2)], atol=1e-9)
    stored = (t.e_joint.copy(), t.e_rows.copy(), t.e_cols.copy(), t.total.copy())
    t.refresh()
    for kept, fresh in zip(stored, (t.e_joint, t.e_rows, t.e_cols, t.total)):
        np.testing.assert_allclose(kept, fresh, rtol=1e-9)


def test_learning_adds_outer_products_of_the_posteriors():
    model, codes = tiny_model(learning={"gate": "accept_all", "eta": None})
    before = [real_counts(t) for t in model.levels]
    out = model.infer_forward(codes[9:10], class_prior=np.eye(2)[[1]])
    q1, q2 = out["q"][0][0], out["q"][1][0]
    model.learn_image(codes[9], 1)
    after = [real_counts(t) for t in model.levels]
    mod = model.modality_codes(codes[9:10])[0]
    keep = lambda q: np.where(q > math.exp(-32), q, 0.0)[:-1]    # noqa: E731
    expected = before[0].copy()
    for f in range(len(model.mod_valid)):
        for k in np.flatnonzero(model.mod_valid[f]):
            expected[f, k, mod[f, k]] += keep(q1[f])
    np.testing.assert_allclose(after[0], expected, atol=1e-12)
    np.testing.assert_allclose(after[1], before[1] + np.einsum("bc,s->bcs", np.stack([keep(q) for q in q1]),
                                                               keep(q2[0]))[None], atol=1e-12)
    expected = before[2].copy()
    expected[0, 0, :, 1] += keep(q2[0])
    np.testing.assert_allclose(after[2], expected, atol=1e-12)


def test_stream_learning_is_deterministic_and_records_diagnostics():
    runs = []
    for _ in range(2):
        model, codes = tiny_model()
        record = model.learn_stream(codes[10:40], np.arange(30) % 2, record_every=10)
        runs.append([real_counts(t) for t in model.levels])
        assert record["mean_weight"].shape == (30, 3) and record["mi"].shape == (3, 3)
        assert np.all((record["mean_weight"] >= 0) & (record["mean_weight"] <= 1))
        np.testing.assert_allclose(record["mi"][-1], model.mutual_information_per_level())
        assert record["mi"][-1, -1] <= math.log(2) + 1e-12
        sample = model.sample([0, 1, 1], np.random.default_rng(0))
        assert sample.shape == (3, 4, 3)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# -- configuration, protocol and scoring -------------------------------------------------


RUN_CLASSES = (StreamData, SplitData, EvaluationData, FitRecipe, FittedRun, FitRun, EvaluationRun, AblationRun,
               AblationTableConfig, SamplesConfig, SamplesRun)


def test_config_has_no_defaults_and_bad_values_are_named():
    for cls in (QuantiserConfig, HierarchyConfig, LearningConfig, InferenceConfig, RGMConfig, *RUN_CLASSES):
        assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   for f in dataclasses.fields(cls)), cls
    assert build(RGMConfig, settings()).level_sides == [8, 4, 2, 1]
    with pytest.raises(ConfigError, match="bins"):
        build(RGMConfig, merge(settings(), {"quantiser": {"bins": None}}))
    with pytest.raises(ValueError, match="tiling"):
        build(RGMConfig, settings(quantiser={"tiling": "hexagonal"}))
    with pytest.raises(ValueError, match="odd"):
        build(RGMConfig, settings(quantiser={"n_bins": 6}))
    with pytest.raises(ValueError, match="spm_forward"):
        build(RGMConfig, settings(inference={"scheme": "exact", "elbo": "spm_demo"}))
    with pytest.raises(KeyError, match="levels"):
        merge(settings(), {"hierarchy": {"levels": 4}})


def workflow_hand_offs(repo_root, preset: str | None) -> dict:
    """The definitions of common.smk and rgm_functions.smk (plain Python) evaluated under
    config.yaml with ``preset`` merged over it, as Snakemake does."""
    import yaml
    from helpers import merged

    config = default_config()
    if preset:
        config = merged(config, yaml.safe_load((repo_root / preset).read_text()))
    names = {"config": config}
    for smk in ("common.smk", "rgm_functions.smk"):
        path = repo_root / "workflow" / "rules" / smk
        exec(compile(path.read_text(), str(path), "exec"), names)
    return names


@pytest.mark.parametrize("preset", [None, "config/smoke.yaml", "config/paper.yaml"])
def test_every_workflow_hand_off_builds_its_run_dataclass(repo_root, preset):
    """rgm_functions.smk restates the run dataclasses' keys and names (importing the package
    there would slow every Snakemake start): each hand-off it builds must build strictly,
    so a key added, dropped or misspelt on either side fails here."""
    smk = workflow_hand_offs(repo_root, preset)
    assert smk["RGM_PROTOCOLS"] == PROTOCOL_FITS and set(PROTOCOL_IMAGES) == set(PROTOCOL_FITS)
    assert set(PROTOCOL_FITS.values()) <= set(smk["RGM_FITS"])
    assert {"paper_slice_demo", "stream"} <= set(PROTOCOL_FITS)
    assert smk["RGM_MODEL_KEYS"] == list(MODEL_KEYS)
    for fit, config in smk["RGM_FIT"].items():
        run = build(FitRun, config)
        assert run.fit == fit and run.recipe.fit_set in FIT_SET_CHOICES
    for protocol, config in smk["RGM_EVALUATION"].items():
        run = build(EvaluationRun, config)
        assert run.protocol == protocol and run.fit == PROTOCOL_FITS[protocol]
        assert run.fitted_config() == build(FitRun, smk["RGM_FIT"][run.fit]).fitted_config()
    for variant, config in smk["RGM_ABLATION"].items():
        run = build(AblationRun, config)
        assert run.variant == variant and isinstance(run.variant_model_config(), RGMConfig)
    assert build(SamplesRun, smk["RGM_SAMPLES"]).fit == "official_test"
    assert set(build(AblationTableConfig, smk["RGM_ABLATION_TABLE"]).descriptions) == set(smk["RGM_ABLATION"])


def test_a_bad_hand_off_stops_before_any_work(repo_root):
    smk = workflow_hand_offs(repo_root, None)
    fit = smk["RGM_FIT"]["official_test"]
    with pytest.raises(ValueError, match="fit_set must be one of"):
        build(FitRun, {**fit, "recipe": {"fit_set": "slice", "overrides": {}}})
    with pytest.raises(KeyError, match="levels"):
        build(FitRun, {**fit, "recipe": {"fit_set": "stream", "overrides": {"hierarchy": {"levels": 4}}}})
    with pytest.raises(KeyError, match="preprocess"):
        build(FitRun, {**fit, "recipe": {"fit_set": "stream", "overrides": {"preprocess": {"resize": "bilinear"}}}})
    with pytest.raises(ValueError, match="protocol must be one of"):
        build(EvaluationRun, {**smk["RGM_EVALUATION"]["validation"], "protocol": "training"})
    with pytest.raises(ValueError, match="classifies with the model 'paper_slice_demo'"):
        build(EvaluationRun, {**smk["RGM_EVALUATION"]["paper_slice"], "protocol": "paper_slice_demo"})
    with pytest.raises(KeyError, match="levels"):
        build(AblationRun, {**smk["RGM_ABLATION"]["full"], "overrides": {"hierarchy": {"levels": 4}}})
    with pytest.raises(KeyError, match="sigma"):
        build(AblationRun, {**smk["RGM_ABLATION"]["full"], "overrides": {"preprocess": {"sigma": 2.0}}})
    with pytest.raises(ConfigError, match="test_limit"):
        build(FitRun, {**smk["RGM_FIT"]["official_test"], "data": smk["RGM_EVALUATION"]["validation"]["data"]})


def test_ablation_variant_merges_its_overrides_into_the_defaults(repo_root):
    smk = workflow_hand_offs(repo_root, None)
    run = build(AblationRun, smk["RGM_ABLATION"]["demo"])
    model = run.variant_model_config()
    assert (model.hierarchy.l1_block, model.learning.eta) == (2, 512.0)
    assert model.quantiser == run.model_config().quantiser and run.variant_preprocess() == run.preprocess
    smoothing = build(AblationRun, {**smk["RGM_ABLATION"]["full"],
                                    "overrides": {"preprocess": {"boundary": "constant"}}})
    assert smoothing.variant_model_config() == smoothing.model_config()
    assert smoothing.variant_preprocess() == {**smoothing.preprocess, "boundary": "constant"}


@pytest.mark.parametrize("preset", [None, "config/smoke.yaml", "config/paper.yaml"])
def test_the_demo_recipe_fit_is_the_demo_and_ours_is_ours(repo_root, preset):
    """paper_slice_demo: the SPM demo's recipe (l1_block 2, eta 512), everything else our
    default; paper_slice: our validation-chosen variant. Both fit on stream + slice."""
    smk = workflow_hand_offs(repo_root, preset)
    demo, ours = (build(FitRun, smk["RGM_FIT"][fit]) for fit in ("paper_slice_demo", "paper_slice"))
    assert demo.recipe.fit_set == ours.recipe.fit_set == "stream+slice"
    d, o = demo.fitted_config(), ours.fitted_config()
    assert (d.hierarchy.l1_block, d.learning.eta) == (2, 512.0) and d.level_sides == [4, 2, 1]
    assert (o.hierarchy.l1_block, o.learning.eta) == (1, None) and o == ours.model_config()
    assert dataclasses.replace(d.hierarchy, l1_block=1) == o.hierarchy
    assert dataclasses.replace(d.learning, eta=None) == o.learning
    assert (d.quantiser, d.inference) == (o.quantiser, o.inference)
    params = build(EvaluationRun, smk["RGM_EVALUATION"]["paper_slice_demo"]).recipe_params()
    assert (params["fit"], params["l1_block"], params["eta"]) == ("paper_slice_demo", 2, 512.0)
    params = build(EvaluationRun, smk["RGM_EVALUATION"]["stream"]).recipe_params()
    assert (params["fit"], params["l1_block"], params["eta"]) == ("official_test", 1, None)


def test_each_protocol_classifies_its_own_images():
    d = build(EvaluationData, {**default_config()["rgm"]["data"], "stream_size": 50, "slice_start": 50,
                               "slice_size": 20, "val_size": 5})
    n_train, n_test = 100, 30
    data = {"train_rgm": np.arange(n_train)[:, None, None] * np.ones((1, 2, 2), dtype=np.int64),
            "train_labels": np.arange(n_train) % 10, "val_index": np.arange(0, n_train, 3),
            "test_rgm": 1000 + np.arange(n_test)[:, None, None] * np.ones((1, 2, 2), dtype=np.int64),
            "test_labels": np.arange(n_test) % 7}
    seen = {}
    for protocol in PROTOCOL_FITS:
        images, labels, described = evaluation_split(protocol, data, d)
        np.testing.assert_array_equal(images[:, 1, 1], images[:, 0, 0])
        rows = images[:, 0, 0]
        expected_labels = data["test_labels"][rows - 1000] if rows.min() >= 1000 else data["train_labels"][rows]
        np.testing.assert_array_equal(labels, expected_labels)
        seen[protocol] = (rows.tolist(), described)
    assert seen["stream"] == (list(range(50)), "training images 1-50 (the stream the model learned from)")
    assert seen["paper_slice"] == seen["paper_slice_demo"] == (list(range(50, 70)), "training images 51-70")
    assert seen["validation"] == ([72, 75, 78, 81, 84], "5 validation images")
    assert seen["official_test"] == seen["official_test_first1000"] == (list(range(1000, 1030)),
                                                                        "official test images 1-30")
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluation_split("training", data, d)


SMALL = {"quantiser": {"image_size": 16, "tile": 4, "tiling": "square", "max_modes": 3, "n_bins": 3}}
SMALL_DATA = {"exemplars_per_class": 2, "stream_start": 0, "stream_size": 60, "slice_start": 60, "slice_size": 30,
              "val_size": 10, "test_limit": 0}


def small_hand_off(hand_off: dict) -> dict:
    """A workflow hand-off with 16x16 images, small square tiles and SMALL_DATA's rows."""
    out = {**hand_off, **merge({key: hand_off[key] for key in MODEL_KEYS}, copy.deepcopy(SMALL))}
    return {**out, "data": {key: SMALL_DATA[key] for key in hand_off["data"]}}


def test_fits_and_evaluations_record_their_recipe_end_to_end(tmp_path, repo_root):
    """The jobs on a tiny synthetic cache: the demo recipe's fit really has level-1 factors
    over 2x2 groups (one structure level fewer than ours), each evaluation records its
    recipe and its confident-half count as table columns, and `stream` classifies the
    stream the official_test model learned from."""
    from rgbench.experiments.rgm import evaluate_job, train_job
    from rgbench.io import load_npz, read_json, save_npz_atomic
    from rgbench.results import flatten_record

    rng = np.random.default_rng(0)
    n_train, n_test = 120, 20
    train_labels, test_labels = np.arange(n_train) % 10, np.arange(n_test) % 10

    def images(labels: np.ndarray) -> np.ndarray:
        raw = rng.random((len(labels), 16, 16))
        raw[np.arange(len(labels)), labels] += 2.0          # each digit brightens its own row
        return ordinal_ranks(raw)

    cache = tmp_path / "mnist32_rgm.npz"
    save_npz_atomic(cache, train_rgm=images(train_labels), train_labels=train_labels, test_rgm=images(test_labels),
                    test_labels=test_labels, val_index=np.arange(90, n_train))
    smk = workflow_hand_offs(repo_root, None)
    for fit in ("official_test", "paper_slice", "paper_slice_demo"):
        (tmp_path / "fits" / fit).mkdir(parents=True)
        summary = train_job(small_hand_off(smk["RGM_FIT"][fit]), str(cache), tmp_path / "fits" / fit)
        assert (summary["fit_set"], summary["fit_images"]) == (("stream", 60) if fit == "official_test" else
                                                               ("stream+slice", 90))
    levels = {fit: load_npz(tmp_path / "fits" / fit / "stream.npz")["mean_weight"].shape[1]
              for fit in ("paper_slice", "paper_slice_demo")}
    assert levels["paper_slice_demo"] == levels["paper_slice"] - 1
    rows = {}
    for protocol in ("paper_slice", "paper_slice_demo", "stream"):
        model = tmp_path / "fits" / PROTOCOL_FITS[protocol]
        out = tmp_path / protocol
        out.mkdir()
        evaluate_job(small_hand_off(smk["RGM_EVALUATION"][protocol]), str(cache), str(model / "model.npz"),
                     str(model / "fit.json"), str(model / "stream.npz"), str(out / "metrics.json"),
                     str(out / "scores.npz"))
        rows[protocol] = flatten_record(read_json(out / "metrics.json"))
        scores = load_npz(out / "scores.npz")
        assert rows[protocol]["confident_half_n"] == int(np.sum(scores["elbo"] > np.median(scores["elbo"])))
        assert rows[protocol]["n_train"] == 60
    assert {key: rows["paper_slice_demo"][key] for key in ("fit", "l1_block", "eta", "fit_set", "n_test")} == \
        {"fit": "paper_slice_demo", "l1_block": 2, "eta": 512.0, "fit_set": "stream+slice", "n_test": 30}
    assert {key: rows["paper_slice"][key] for key in ("fit", "l1_block", "eta", "fit_set", "n_test")} == \
        {"fit": "paper_slice", "l1_block": 1, "eta": None, "fit_set": "stream+slice", "n_test": 30}
    assert {key: rows["stream"][key] for key in ("fit", "protocol", "fit_set", "n_test")} == \
        {"fit": "official_test", "protocol": "stream", "fit_set": "stream", "n_test": 60}
    np.testing.assert_array_equal(load_npz(tmp_path / "stream" / "scores.npz")["labels"], train_labels[:60])


def test_protocol_splits_are_disjoint():
    d = build(EvaluationData, default_config()["rgm"]["data"])
    stream, piece = d.stream_rows(60000), d.slice_rows(60000)
    assert (stream[0], stream[-1], piece[0], piece[-1]) == (0, 9999, 10000, 10999)
    val = d.validation_rows(np.arange(0, 60000, 7), 60000)
    assert len(val) == d.val_size and val.min() >= 11000
    with pytest.raises(ValueError, match="overlaps"):
        dataclasses.replace(d, slice_start=9000).slice_rows(60000)
    with pytest.raises(ValueError, match="validation"):
        d.validation_rows(np.arange(0, 11000), 60000)


def test_confident_half_and_accuracy_by_elbo_quantile():
    correct = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    elbo = np.array([5.0, -3.0, 4.0, 2.0, -1.0, 0.0])
    assert confident_half_accuracy(correct, elbo) == 1.0          # elbo > median (1.0): 5, 4, 2
    assert math.isnan(confident_half_accuracy(correct, np.zeros(6)))
    # lowest ELBO first: (-3, -1) -> 0/2, (0, 2) -> 2/2, (4, 5) -> 2/2
    np.testing.assert_allclose(accuracy_by_elbo_quantile(correct, elbo, 3), [0.0, 1.0, 1.0])


def test_ablation_table_gives_differences_to_the_full_model(tmp_path):
    from rgbench.experiments.rgm import ablation_table_job
    from rgbench.results import provenance, write_metrics

    files = []
    for variant, acc, half in (("full", 0.9, 0.97), ("no_forgetting", 0.85, 0.99)):
        path = tmp_path / variant / "metrics.json"
        metrics = {"variant": variant, "val_accuracy": acc, "val_accuracy_se": binomial_se(acc, 2000),
                   "confident_half_accuracy": half, "confident_half_accuracy_exact_elbo": half,
                   "accepted_share": 0.3, "top_mi": 2.2, "learn_seconds": 10.0}
        write_metrics(path, experiment="rgm_ablation", run_id=variant, params={}, seed=None, metrics=metrics,
                      wall_seconds=1.0, device="cpu",
                      provenance=provenance(n_train=2000, n_val=2000, n_test=0, data_sha256="x", n_params=None))
        files.append(str(path))
    table = ablation_table_job(files, {"descriptions": {"full": "the defaults"}}, str(tmp_path / "ablation.csv"))
    row = table.set_index("variant").loc["no_forgetting"]
    assert row["delta_accuracy"] == pytest.approx(-0.05) and row["delta_confident_half"] == pytest.approx(0.02)
    assert row["val_accuracy_se"] == pytest.approx(math.sqrt(0.85 * 0.15 / 2000))
    assert table.set_index("variant").loc["full", "description"] == "the defaults"
    with pytest.raises(ValueError, match="full"):
        ablation_table_job(files[1:], {"descriptions": {}}, str(tmp_path / "other.csv"))
    old = tmp_path / "old.json"        # written before the metric was named for its images
    write_metrics(old, experiment="rgm_ablation", run_id="full", params={}, seed=None,
                  metrics={"variant": "full", "test_accuracy": 0.9}, wall_seconds=1.0, device="cpu",
                  provenance=provenance(n_train=2000, n_val=2000, n_test=0, data_sha256="x", n_params=None))
    with pytest.raises(ValueError, match="val_accuracy"):
        ablation_table_job([str(old)], {"descriptions": {}}, str(tmp_path / "stale.csv"))
