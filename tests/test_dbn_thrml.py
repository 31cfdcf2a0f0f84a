"""THRML's program of a DBN's top-level RBM samples what ``BernoulliRBM.gibbs`` samples.

Both samplers run the same Markov kernel (h | v, y; then v | h and, with the label free,
y | h), so from the same start their chains have the same distribution after every sweep,
mixed or not. On a tiny top RBM (4 penultimate units, 3 hidden, 10 labels) that
distribution is computed exactly, as the start times the t-th power of the kernel's
transition matrix over (v, y) (the hidden units enumerated), and each sampler's empirical
distribution over many chains must lie within a total-variation bound of it after 1 sweep
(the kernel itself) and after 40 (the stationary distribution, itself checked against the
enumerated marginal exp(-F(v, y)) / Z). Each THRML program costs a few seconds of JAX
compilation, so there are four (two modes of the tiny model, two of a small DBN).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from rgbench.models.potts_thrml import configure_jax

configure_jax(1)

from helpers import dbn_config  # noqa: E402

from rgbench.models.dbn import DBN, BernoulliRBM  # noqa: E402
from rgbench.models.potts_thrml import DBNTopGraph, ThrmlSampler, dbn_top_graph  # noqa: E402

pytestmark = pytest.mark.slow

VISIBLE, HIDDEN, CLASSES = 4, 3, 10
CHAINS = 30_000
EARLY, SWEEPS = 1, 40  # a checkpoint before mixing (the kernel itself) and one after (the stationary law)


def tv_bound(p: np.ndarray, n: int) -> float:
    """E[TV] <= 1/2 sum sqrt(p (1 - p) / n) plus a McDiarmid deviation at 1e-6."""
    return 0.5 * np.sqrt(p * (1 - p) / n).sum() + math.sqrt(math.log(1e6) / (2 * n))


def total_variation(codes: np.ndarray, p: np.ndarray) -> float:
    return 0.5 * np.abs(np.bincount(codes, minlength=len(p)) / len(codes) - p).sum()


def bits(width: int) -> np.ndarray:
    """Every 0/1 vector of ``width`` bits, (2^width, width), row r the binary digits of r."""
    return ((np.arange(2 ** width)[:, None] >> np.arange(width)[::-1]) & 1).astype(np.float64)


def v_codes(v: np.ndarray) -> np.ndarray:
    """The row index in bits(VISIBLE) of each (N, VISIBLE) 0/1 state."""
    return (np.asarray(v).astype(np.int64) * (2 ** np.arange(VISIBLE)[::-1])).sum(1)


def kernel(top: BernoulliRBM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sweep's exact pieces: p(h | v, y) (V, K, Hs), p(v' | h) (Hs, V), p(y' | h) (Hs, K)
    over every v (V = 16 states), label and h (Hs = 8 states), float64."""
    w, b, c = (getattr(top, n).detach().double().numpy() for n in ("weight", "visible_bias", "hidden_bias"))
    u, d = top.label_weight.detach().double().numpy(), top.label_bias.detach().double().numpy()
    vs, hs = bits(VISIBLE), bits(HIDDEN)

    def bernoulli_prob(act: np.ndarray, states: np.ndarray) -> np.ndarray:  # act (..., n), states (S, n)
        q = 1 / (1 + np.exp(-act[..., None, :]))
        return np.prod(np.where(states == 1, q, 1 - q), axis=-1)

    p_h = bernoulli_prob((vs @ w + c)[:, None, :] + u[None], hs)  # (V, K, Hs)
    p_v = bernoulli_prob(hs @ w.T + b, vs)  # (Hs, V)
    logits = hs @ u.T + d
    p_y = np.exp(logits - logits.max(1, keepdims=True))
    return p_h, p_v, p_y / p_y.sum(1, keepdims=True)


def exact_after(top: BernoulliRBM, sweeps: int, label: int | None) -> np.ndarray:
    """The law of v (label clamped to ``label``), or of (v, y) coded y * 16 + v (label free),
    after ``sweeps`` sweeps from v = 0 (and y = 0)."""
    p_h, p_v, p_y = kernel(top)
    if label is not None:
        transition = p_h[:, label] @ p_v  # (V, V)
    else:  # T[(v, y), (v', y')] = sum_h p(h | v, y) p(v' | h) p(y' | h)
        transition = np.einsum("vkh,hw,hy->kvyw", p_h, p_v, p_y).reshape(CLASSES * 16, CLASSES * 16)
    p = np.zeros(len(transition))
    p[0] = 1.0
    for _ in range(sweeps):
        p = p @ transition
    return p


def stationary(top: BernoulliRBM, label: int | None) -> np.ndarray:
    """exp(-F) / Z by enumeration: p(v | y = label), or p(v, y) coded y * 16 + v."""
    vs = torch.from_numpy(bits(VISIBLE)).float()
    labels = range(CLASSES) if label is None else [label]
    with torch.no_grad():
        free = torch.cat([top.free_energy(vs, torch.full((16,), y)) for y in labels]).double()
    return torch.softmax(-free, 0).numpy()


@pytest.fixture(scope="module")
def tiny_dbn() -> DBN:
    """A DBN whose top RBM is 4 x 3 with 10 labels, at random parameters of moderate size
    (strong enough that a wrong conditional shows, weak enough to mix in 40 sweeps)."""
    model = DBN(dbn_config(hidden=[5, VISIBLE, HIDDEN], epochs=[1, 1, 1]))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, scale in (("weight", 1.2), ("visible_bias", 0.8), ("hidden_bias", 0.8), ("label_weight", 1.5),
                            ("label_bias", 1.0)):
            parameter = getattr(model.top, name)
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def test_clamped_label_program_samples_p_v_given_y(tiny_dbn: DBN) -> None:
    top = tiny_dbn.top
    graph, params = dbn_top_graph(tiny_dbn, clamp_labels=True)
    assert isinstance(graph, DBNTopGraph) and len(graph.blocks) == 2
    digits = (3, 7)
    labels = np.array(digits)[np.arange(CHAINS) % 2]
    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=EARLY)
    start = graph.to_state(np.zeros((CHAINS, VISIBLE), dtype=np.uint8), None, np.random.default_rng(0))
    run = sampler.run(params, start, graph.clamp(labels, CHAINS), SWEEPS, seed=4, to_images=graph.penultimate,
                      checkpoints=(EARLY,))
    assert len(run.final_state) == 2  # hidden and penultimate: the label is a clamped block
    np.testing.assert_array_equal(graph.labels(run.final_state, labels), labels)
    # the torch sampler from the same start, with the same checkpoints
    generator = torch.Generator().manual_seed(5)
    y = torch.from_numpy(labels)
    early, _, _ = top.gibbs(torch.zeros(CHAINS, VISIBLE), y, EARLY, generator, clamp_labels=True)
    late, same, _ = top.gibbs(early, y, SWEEPS - EARLY, generator, clamp_labels=True)
    assert torch.equal(same, y)
    n = CHAINS // 2
    for k in digits:
        rows = labels == k
        p_early, p_late = exact_after(top, EARLY, k), exact_after(top, SWEEPS, k)
        np.testing.assert_allclose(p_late, stationary(top, k), atol=1e-6)  # mixed by SWEEPS
        for samples, p in ((run.snapshots[EARLY], p_early), (run.images, p_late), (early.numpy(), p_early),
                           (late.numpy(), p_late)):
            assert total_variation(v_codes(samples[rows]), p) < tv_bound(p, n)
    # the check has power: the two digits' laws lie far apart on this model
    assert 0.5 * np.abs(stationary(top, 3) - stationary(top, 7)).sum() > 3 * tv_bound(stationary(top, 3), n)


def test_free_label_program_samples_the_joint_law(tiny_dbn: DBN) -> None:
    top = tiny_dbn.top
    graph, params = dbn_top_graph(tiny_dbn, clamp_labels=False)
    assert len(graph.blocks) == 3 and graph.clamp(None, CHAINS) == []
    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=EARLY)
    start = graph.to_state(np.zeros((CHAINS, VISIBLE), dtype=np.uint8), np.zeros(CHAINS, dtype=np.int64),
                           np.random.default_rng(0))

    def joint(state: list) -> np.ndarray:  # each chain's (v, y) as y * 16 + v
        return graph.labels(state) * 16 + v_codes(graph.penultimate(state))

    run = sampler.run(params, start, [], SWEEPS, seed=6, to_images=joint, checkpoints=(EARLY,))
    labels = graph.labels(run.final_state)
    assert labels.dtype == np.int64 and labels.shape == (CHAINS,)
    generator = torch.Generator().manual_seed(7)
    v, y, _ = top.gibbs(torch.zeros(CHAINS, VISIBLE), torch.zeros(CHAINS, dtype=torch.long), EARLY, generator,
                        clamp_labels=False)
    torch_early = y.numpy() * 16 + v_codes(v.numpy())
    v, y, _ = top.gibbs(v, y, SWEEPS - EARLY, generator, clamp_labels=False)
    torch_late = y.numpy() * 16 + v_codes(v.numpy())
    p_early, p_late = exact_after(top, EARLY, None), exact_after(top, SWEEPS, None)
    np.testing.assert_allclose(p_late, stationary(top, None), atol=1e-6)  # mixed by SWEEPS
    for codes, p in ((run.snapshots[EARLY], p_early), (run.images, p_late), (torch_early, p_early),
                     (torch_late, p_late)):
        assert total_variation(codes, p) < tv_bound(p, CHAINS)
    # the check has power: without the label bias d the joint law is far from this one
    with torch.no_grad():
        saved = top.label_bias.clone()
        top.label_bias.zero_()
        p_without = stationary(top, None)
        top.label_bias.copy_(saved)
    assert 0.5 * np.abs(p_without - p_late).sum() > 3 * tv_bound(p_late, CHAINS)


@pytest.mark.parametrize("clamp_labels", [True, False])
def test_dbn_top_graph_of_a_small_dbn_runs(clamp_labels: bool) -> None:
    """The integrator's wiring: dbn_top_graph of an untrained DBN, a few sweeps of a few chains."""
    torch.manual_seed(0)
    dbn = DBN(dbn_config(hidden=[8, 6], epochs=[1, 1]))
    graph, params = dbn_top_graph(dbn, clamp_labels)
    assert [p.shape for p in params] == [(8, 6), (8,), (6,), (10, 6), (10,)]
    assert all(isinstance(p, np.ndarray) and p.dtype == np.float32 for p in params)
    np.testing.assert_array_equal(params[0], dbn.top.weight.detach().numpy())
    chains, rng = 5, np.random.default_rng(1)
    labels = np.array([0, 3, 9, 9, 4])
    start = graph.to_state(rng.integers(0, 2, size=(chains, 8)), labels, rng)
    assert [s.dtype for s in start] == [np.uint8] * len(graph.blocks)
    clamp = graph.clamp(labels, chains)
    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=1)
    run = sampler.run(params, start, clamp, 2, seed=0, to_images=graph.penultimate, checkpoints=(1,))
    pen = graph.penultimate(run.final_state)
    assert pen.shape == (chains, 8) and pen.dtype == np.float32 and np.isin(pen, (0, 1)).all()
    np.testing.assert_array_equal(run.images, pen)
    hidden = graph.hidden_bits(run.final_state)
    assert hidden.shape == (chains, 6) and hidden.dtype == np.float32 and np.isin(hidden, (0, 1)).all()
    out = graph.labels(run.final_state, labels if clamp_labels else None)
    assert out.shape == (chains,) and out.dtype == np.int64 and ((out >= 0) & (out < 10)).all()
    if clamp_labels:
        assert len(run.final_state) == 2 and clamp[0].shape == (chains, 1)
        np.testing.assert_array_equal(out, labels)
    else:
        assert len(run.final_state) == 3 and clamp == []


def test_bad_input_raises_clear_errors() -> None:
    clamped, free = DBNTopGraph(4, 3, 10, clamp_labels=True), DBNTopGraph(4, 3, 10, clamp_labels=False)
    rng = np.random.default_rng(0)
    pen = np.zeros((2, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="needs labels"):
        clamped.clamp(None, 2)
    with pytest.raises(ValueError, match="labels must be integers"):
        clamped.clamp(np.array([0, 10]), 2)
    with pytest.raises(ValueError, match="expected 2 labels"):
        clamped.clamp(np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match=r"expected \(chains, 4\)"):
        clamped.to_state(np.zeros((2, 5)), None, rng)
    with pytest.raises(ValueError, match="0 or 1"):
        free.to_state(pen + 2, np.array([0, 1]), rng)
    with pytest.raises(ValueError, match="labels must be integers"):
        free.to_state(pen, np.array([-1, 1]), rng)
    state = free.to_state(pen, None, rng)  # a free label with no start: uniform, as DBN.sample starts it
    assert state[2].shape == (2, 1) and state[2].dtype == np.uint8 and state[2].max() < 10
    with pytest.raises(ValueError, match="pass the clamped ones"):
        clamped.labels(clamped.to_state(pen, None, rng))
    with pytest.raises(ValueError, match="pass no clamped labels"):
        free.labels(state, np.array([0, 1]))
    params = [np.zeros(s, dtype=np.float32) for s in ((4, 3), (4,), (3,), (10, 3), (10,))]
    params[0] = np.zeros((3, 4), dtype=np.float32)  # W transposed
    with pytest.raises(ValueError, match=r"weight must have shape \(4, 3\)"):
        clamped.program(*params)
    with pytest.raises(ValueError, match="invalid top RBM sizes"):
        DBNTopGraph(0, 3, 10, clamp_labels=True)
    with pytest.raises(TypeError):
        dbn_top_graph(BernoulliRBM(4, 3, 10), clamp_labels=True)


def test_importing_the_module_never_imports_jax() -> None:
    """The Snakemake jobs pin XLA's threads before jax is first imported."""
    code = "import sys, rgbench.models.potts_thrml; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_thrml_job_samples_both_dbn_rows_as_the_evaluate_job_does(tmp_path) -> None:
    """The potts_ebm THRML job of a DBN: THRML runs the top RBM (labels clamped for
    dbn_cond, free for dbn) for the budget and the long run, and the row carries the same
    scores, at the same sweeps, as our sampler's row."""
    import json

    from helpers import default_config, level_files

    from rgbench.experiments import potts_ebm
    from rgbench.experiments.potts_ebm_thrml import thrml_job
    from rgbench.io import load_npz

    mnist4, reference, stats = level_files(tmp_path)
    section = default_config()["potts_ebm"]
    dbn = {**section["dbn"], "hidden": [12, 8], "epochs": [1, 1], "batch_size": 20, "chains": 10, "prior_chains": 0}
    run = {"model": "dbn_cond", "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0, "training": dbn}
    model_path = tmp_path / "trained" / "model.pt"
    potts_ebm.train_job(run, str(mnist4), str(model_path), str(tmp_path / "trained" / "epochs.npz"), device="cpu")
    thrml = {"seed": 0, "samples": 20, "checkpoints": [1, 2, 5], "ceiling_images": 40, "memorisation_images": 20,
             "dbn_sample_sweeps": 3, "long_sweeps_factor": 2}
    for model in ("dbn_cond", "dbn"):
        out = tmp_path / model
        thrml_job({**run, "model": model}, thrml, str(mnist4), str(model_path), str(reference), str(stats),
                  str(out / "metrics.json"), str(out / "samples.npz"), run_id=f"model-{model}_seed-0", device="cpu")
        record = json.loads((out / "metrics.json").read_text())
        metrics, samples = record["metrics"], load_npz(out / "samples.npz")
        assert record["params"]["sampler"] == "thrml" and record["run_id"] == f"model-{model}_seed-0_sampler-thrml"
        assert metrics["sample_sweeps"] == 3 and metrics["long_sample_sweeps"] == 6 and metrics["n_samples"] == 20
        assert samples["checkpoints"].tolist() == [1, 2, 3, 6]
        assert samples["samples"].shape == (20, 28, 28) and samples["samples"].max() <= 3
        assert metrics["cpu_seconds_per_1000_samples"] > 0 and metrics["first_call_seconds"] > 0
        assert ("conditional_recognition" in metrics) == (model == "dbn_cond")
        assert samples["labels"].tolist() == ([i % 10 for i in range(20)] if model == "dbn_cond" else [])
