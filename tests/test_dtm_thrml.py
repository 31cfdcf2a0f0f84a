"""THRML's program of one DTM step samples what ``DTM.denoise`` samples, and the THRML job
samples and scores the DTM rows as the evaluate job does.

One step of the denoising chain is a categorical RBM over x_{i-1} with x_i (and the label)
clamped and the fixed coupling J [x_{i-1,s} = x_{i,s}]. On a tiny RBM (2 x 2 sites of 4
levels, 3 hidden units) the law of x_{i-1} after t sweeps from x_{i-1} = x_i is computed
exactly, as the t-th power of the sweep's transition matrix over the 256 images (the hidden
units enumerated), and its stationary law as sum_h exp(-E) / Z(x_i) by enumeration. The
coupling enters the exact law in its plain form J [v_s = c_s], so the reference-gauge form
that both samplers use is checked too. THRML's chains and our torch ``DTM.denoise`` (a DTM
holding the tiny RBM) must lie within a total-variation bound of the exact laws after
1 sweep (the kernel itself) and after ``SWEEPS`` (the stationary law), each chain with its
own conditioning image (and label). Each THRML program costs a JAX compilation of a few
seconds, so there are four: the tiny step with and without labels, and the job's two rows.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from rgbench.models.potts_thrml import configure_jax

configure_jax(1)

from rgbench.models.dtm import DTM, DTMConfig  # noqa: E402
from rgbench.models.potts_thrml import DTMStepGraph, ThrmlSampler, dtm_step_graph, dtm_step_params  # noqa: E402
from rgbench.models.rbm import CategoricalRBM, RBMConfig  # noqa: E402

pytestmark = pytest.mark.slow

HEIGHT, WIDTH, LEVELS, HIDDEN = 2, 2, 4, 3
SITES = HEIGHT * WIDTH
CHAINS = 40_000
EARLY, SWEEPS = 1, 30  # a checkpoint before mixing (the kernel itself) and one after (the stationary law)
COUPLING = 1.2
# two conditioning images x_i, alternating over the chains
CONDITIONS = np.array([[[0, 1], [2, 3]], [[3, 3], [0, 1]]], dtype=np.uint8)
DIGITS = (2, 7)  # the labels of the labelled case, alternating over pairs of chains

STATES = np.array(list(itertools.product(range(LEVELS), repeat=SITES)), dtype=np.int64)  # (256, sites)
HIDDEN_STATES = np.array(list(itertools.product((0, 1), repeat=HIDDEN)), dtype=np.float64)  # (8, H)


def codes(images: np.ndarray) -> np.ndarray:
    """The row index in STATES of each (N, ...) image."""
    flat = np.asarray(images).reshape(len(images), -1).astype(np.int64)
    return (flat * (LEVELS ** np.arange(SITES)[::-1])).sum(1)


def tv_bound(p: np.ndarray, n: int) -> float:
    """E[TV] <= 1/2 sum sqrt(p (1 - p) / n) plus a McDiarmid deviation at 1e-6."""
    return 0.5 * np.sqrt(p * (1 - p) / n).sum() + math.sqrt(math.log(1e6) / (2 * n))


def total_variation(images: np.ndarray, p: np.ndarray) -> float:
    return 0.5 * np.abs(np.bincount(codes(images), minlength=len(p)) / len(images) - p).sum()


def exact_laws(rbm: CategoricalRBM, condition: np.ndarray, label: int | None, coupling: float,
               sweeps: tuple[int, ...]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The exact conditional law p(x_{i-1} | x_i = condition, y = label) = sum_h exp(-E) / Z,
    with -E = sum_s b_s[v_s] + c.h + sum_sj W_s[v_s, j] h_j + U_y.h + J sum_s [v_s = c_s]
    (level 0's b and W are 0), over STATES; and the law after each of ``sweeps`` sweeps
    (h | v, y; then v | h, x_i) from v = condition. float64."""
    w = rbm.weight.detach().double().numpy().reshape(SITES, LEVELS - 1, HIDDEN)
    w = np.concatenate([np.zeros((SITES, 1, HIDDEN)), w], axis=1)  # (sites, L, H), level 0 rows 0
    b = np.concatenate([np.zeros((SITES, 1)), rbm.visible_bias.detach().double().numpy().reshape(SITES, -1)], axis=1)
    c = rbm.hidden_bias.detach().double().numpy()
    if label is not None:
        c = c + rbm.label_weight.detach().double().numpy()[label]
    cond = np.asarray(condition).reshape(-1)
    site = np.arange(SITES)
    level_field = b + coupling * (np.arange(LEVELS)[None, :] == cond[:, None])  # (sites, L)
    act = c + w[site, STATES].sum(1)  # (256, H): a(v)
    log_unnorm = level_field[site, STATES].sum(1) + np.logaddexp(0, act).sum(1)
    stationary = np.exp(log_unnorm - log_unnorm.max())
    stationary /= stationary.sum()
    q = 1 / (1 + np.exp(-act))  # p(h_j = 1 | v)
    p_h = np.prod(np.where(HIDDEN_STATES[None] == 1, q[:, None], 1 - q[:, None]), axis=-1)  # (256, 8)
    logits = level_field[None] + np.einsum("slh,kh->ksl", w, HIDDEN_STATES)  # (8, sites, L)
    p_level = np.exp(logits - logits.max(-1, keepdims=True))
    p_level /= p_level.sum(-1, keepdims=True)
    p_v = np.prod(p_level[:, site, STATES], axis=-1)  # (8, 256): p(v' | h, x_i)
    transition = p_h @ p_v
    p = np.zeros(len(STATES))
    p[codes(cond[None])[0]] = 1.0
    after, done = {}, 0
    for t in sorted(sweeps):
        for _ in range(t - done):
            p = p @ transition
        after[t], done = p.copy(), t
    return stationary, after


def tiny_rbm(classes: int, seed: int) -> CategoricalRBM:
    """A 2 x 2-site, 3-hidden categorical RBM at random parameters of moderate size (strong
    enough that a wrong conditional shows and one sweep from x_i is not yet the stationary
    law, weak enough to mix in SWEEPS sweeps)."""
    torch.manual_seed(seed)
    rbm = CategoricalRBM(RBMConfig(height=HEIGHT, width=WIDTH, levels=LEVELS, hidden=HIDDEN, classes=classes,
                                   init_std=1.5))
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
        rbm.label_weight.mul_(3.0)  # the labels' laws far apart (no-op without labels: the placeholder is 0)
    return rbm


def torch_denoise(rbm: CategoricalRBM, coupling: float, x_cond: np.ndarray, labels: np.ndarray | None, sweeps: int,
                  seed: int) -> np.ndarray:
    """``DTM.denoise`` itself, of a one-step DTM holding the tiny RBM at coupling J."""
    dtm = DTM(DTMConfig(steps=1, rate=1.0, hidden=HIDDEN, sweeps=1, epochs=0, batch_size=1, lr=0.01,
                        lr_final_factor=1.0, weight_decay=0.0, init_std=0.5, classes=rbm.config.classes,
                        smoothing=1.0))
    dtm.rbms[0] = rbm
    with torch.no_grad():
        dtm.coupling.fill_(coupling)
    y = None if labels is None else torch.from_numpy(labels)
    out = dtm.denoise(1, torch.from_numpy(x_cond), y, sweeps, torch.Generator().manual_seed(seed))
    return out.numpy()


@pytest.mark.parametrize("classes", [0, 10])
def test_dtm_step_program_samples_the_exact_conditional(classes: int) -> None:
    rbm = tiny_rbm(classes, seed=11 + classes)
    graph, params = dtm_step_graph(rbm, COUPLING)
    assert isinstance(graph, DTMStepGraph) and len(graph.blocks) == 2
    assert len(params) == (5 if classes else 4) and params[3].shape == () and params[3].dtype == np.float32
    which = np.arange(CHAINS) % 2  # each chain's conditioning image
    x_cond = CONDITIONS[which]
    labels = np.array(DIGITS)[(np.arange(CHAINS) // 2) % 2] if classes else None
    groups = [(k, None) for k in (0, 1)] if not classes else [(k, d) for k in (0, 1) for d in DIGITS]

    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=EARLY)
    start = graph.to_state(x_cond, np.random.default_rng(0))
    clamp = graph.clamp(x_cond, labels)
    assert len(clamp) == (2 if classes else 1) and clamp[0].shape == (CHAINS, 1, SITES)
    run = sampler.run(params, start, clamp, SWEEPS, seed=4, to_images=lambda s: graph.to_images(s, HEIGHT, WIDTH),
                      checkpoints=(EARLY,))
    assert run.images.shape == (CHAINS, HEIGHT, WIDTH) and run.images.dtype == np.uint8
    assert len(run.call_seconds) == SWEEPS and len(run.call_cpu_seconds) == SWEEPS
    early = torch_denoise(rbm, COUPLING, x_cond, labels, EARLY, seed=5)
    late = torch_denoise(rbm, COUPLING, x_cond, labels, SWEEPS, seed=6)

    stationary_laws, kernel_power = {}, []
    for k, digit in groups:
        rows = (which == k) if digit is None else (which == k) & (labels == digit)
        n = int(rows.sum())
        stationary, after = exact_laws(rbm, CONDITIONS[k], digit, COUPLING, (EARLY, SWEEPS))
        np.testing.assert_allclose(after[SWEEPS], stationary, atol=1e-6)  # mixed by SWEEPS
        stationary_laws[k, digit] = stationary
        for samples, p in ((run.snapshots[EARLY], after[EARLY]), (run.images, stationary), (early, after[EARLY]),
                           (late, stationary)):
            assert total_variation(samples[rows], p) < tv_bound(p, n)
        # the check has power: the coupling matters
        uncoupled, _ = exact_laws(rbm, CONDITIONS[k], digit, 0.0, ())
        assert 0.5 * np.abs(uncoupled - stationary).sum() > 3 * tv_bound(stationary, n)
        kernel_power.append(0.5 * np.abs(after[EARLY] - stationary).sum() / tv_bound(stationary, n))
    # ... one sweep is not yet the stationary law (in some group: some mix at once) ...
    assert max(kernel_power) > 3
    # ... and the conditioning images (and labels) have their own laws
    digit = groups[0][1]
    p, q = stationary_laws[0, digit], stationary_laws[1, digit]
    assert 0.5 * np.abs(p - q).sum() > 3 * tv_bound(p, CHAINS // len(groups))
    if classes:
        p, q = stationary_laws[0, DIGITS[0]], stationary_laws[0, DIGITS[1]]
        assert 0.5 * np.abs(p - q).sum() > 3 * tv_bound(p, CHAINS // len(groups))

    # another step's parameters (another J) reuse the compiled program
    other = dtm_step_params(rbm, 0.3)
    sampler.run(other, start, clamp, 1, seed=7, to_images=lambda s: graph.to_images(s, HEIGHT, WIDTH))
    assert sampler._fn._cache_size() == 1


def test_dtm_step_graph_rejects_bad_input() -> None:
    graph, params = dtm_step_graph(tiny_rbm(10, seed=0), COUPLING)
    x = CONDITIONS[[0, 1]]
    with pytest.raises(ValueError, match="needs 2 labels"):
        graph.clamp(x, None)
    with pytest.raises(ValueError, match="labels must be integers"):
        graph.clamp(x, np.array([0, 10]))
    with pytest.raises(ValueError, match="levels must be integers"):
        graph.clamp(x + 3, np.array([0, 1]))
    with pytest.raises(ValueError, match="images of 4 sites"):
        graph.to_state(np.zeros((2, 3, 3), dtype=np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"label_weight must have shape \(10, 3\)"):
        graph.program(*params[:4])
    with pytest.raises(ValueError, match=r"coupling must have shape \(\)"):
        graph.program(params[0], params[1], params[2], np.zeros(2, dtype=np.float32), params[4])
    free, free_params = dtm_step_graph(tiny_rbm(0, seed=0), COUPLING)
    with pytest.raises(ValueError, match="takes no labels"):
        free.clamp(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="takes no label_weight"):
        free.program(*free_params, params[4])
    with pytest.raises(ValueError, match="coupling must be finite"):
        dtm_step_params(tiny_rbm(0, seed=0), float("nan"))
    with pytest.raises(TypeError):
        dtm_step_graph(torch.nn.Linear(2, 2), COUPLING)


def test_thrml_job_samples_both_dtm_rows_as_the_evaluate_job_does(tmp_path) -> None:
    """The potts_ebm THRML job of a DTM: THRML runs every step (label clamped for dtm_cond)
    from uniform noise for the budget and the long pass; the row carries the evaluate job's
    columns at the same sweeps, and a rerun with the same seed gives the same samples."""
    from helpers import level_files

    from rgbench.experiments import potts_ebm
    from rgbench.experiments.potts_ebm_thrml import thrml_job
    from rgbench.io import load_npz

    mnist4, reference, stats = level_files(tmp_path)
    steps, sweeps, factor, samples = 2, 2, 2, 20
    training = dict(steps=steps, rate=1.0, hidden=8, sweeps=sweeps, epochs=1, batch_size=20, lr=0.01,
                    lr_final_factor=0.2, weight_decay=0.0, init_std=0.05)
    thrml = {"seed": 0, "samples": samples, "ceiling_images": 40, "memorisation_images": 20,
             "long_sweeps_factor": factor}
    for model in ("dtm", "dtm_cond"):  # two rows, two trained models (train_dtm through the train job)
        run = {"model": model, "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0, "training": training}
        model_path = tmp_path / model / "trained" / "model.pt"
        potts_ebm.train_job(run, str(mnist4), str(model_path), str(tmp_path / model / "trained" / "epochs.npz"),
                            device="cpu")
        out = tmp_path / model / "thrml"
        thrml_job(run, thrml, str(mnist4), str(model_path), str(reference), str(stats), str(out / "metrics.json"),
                  str(out / "samples.npz"), run_id=f"model-{model}_seed-0", device="cpu")
        record = json.loads((out / "metrics.json").read_text())
        metrics, saved = record["metrics"], load_npz(out / "samples.npz")
        assert record["params"]["sampler"] == "thrml" and record["run_id"] == f"model-{model}_seed-0_sampler-thrml"
        assert record["params"]["model"] == model
        assert metrics["sample_sweeps"] == steps * sweeps and metrics["long_sample_sweeps"] == steps * sweeps * factor
        assert metrics["n_samples"] == samples and metrics["dtm_steps"] == steps
        assert metrics["sweeps_per_step"] == sweeps
        assert metrics["likelihood_method"] == "none" and metrics["test_nll_nats"] is None
        assert metrics["cpu_seconds_per_1000_samples"] > 0 and metrics["first_call_seconds"] > 0
        assert metrics["train_cpu_seconds"] > 0 and metrics["long_cpu_seconds_per_1000_samples"] > 0
        assert ("conditional_recognition" in metrics) == (model == "dtm_cond")
        # the evaluate job's checkpoints: sweeps from the start after each step, then the long run's end
        assert saved["checkpoints"].tolist() == [sweeps * k for k in range(1, steps + 1)] + [steps * sweeps * factor]
        assert saved["samples"].shape == (samples, 28, 28) and saved["samples"].max() <= 3
        assert saved["labels"].tolist() == ([i % 10 for i in range(samples)] if model == "dtm_cond" else [])
    # the same seed, the same samples
    again = tmp_path / "dtm_cond" / "again"
    thrml_job(run, thrml, str(mnist4), str(model_path), str(reference), str(stats), str(again / "metrics.json"),
              str(again / "samples.npz"), run_id="model-dtm_cond_seed-0", device="cpu")
    first, second = load_npz(out / "samples.npz"), load_npz(again / "samples.npz")
    assert sorted(first) == sorted(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    # a row and a model of the other kind do not mix
    with pytest.raises(ValueError, match="dtm samples a DTM without labels"):
        thrml_job({**run, "model": "dtm"}, thrml, str(mnist4), str(model_path), str(reference), str(stats),
                  str(tmp_path / "bad" / "metrics.json"), str(tmp_path / "bad" / "samples.npz"), run_id="bad",
                  device="cpu")
