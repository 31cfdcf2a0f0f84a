"""THRML programs of the potts_ebm models sample the same distributions as our samplers.

Each THRML program costs a JAX compilation of 10-25 s, so these tests are few and tiny:
one class-conditional lattice and one class-conditional RBM, each checked against exact
enumeration (which also covers the unconditional forms: same factors without the label).
"""

from __future__ import annotations

import itertools
import os
import sys
import math

import numpy as np
import pytest
import torch

from rgbench.models.potts_thrml import configure_jax

configure_jax(1)

from rgbench.models.potts import PottsConfig, PottsModel  # noqa: E402
from rgbench.models.potts_thrml import LatticeFactorGraph, RBMLayerGraph, ThrmlSampler, thrml_graph  # noqa: E402
from rgbench.models.rbm import CategoricalRBM, RBMConfig  # noqa: E402

pytestmark = pytest.mark.slow


def codes(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.int64)
    return (flat * (4 ** np.arange(flat.shape[1])[::-1])).sum(1)


def total_variation(samples: np.ndarray, p: np.ndarray) -> float:
    return 0.5 * np.abs(np.bincount(codes(samples), minlength=len(p)) / len(samples) - p).sum()


def tv_bound(p: np.ndarray, n: int) -> float:
    """E[TV] <= 1/2 sum sqrt(p (1 - p) / n) plus a McDiarmid deviation at 1e-6."""
    return 0.5 * np.sqrt(p * (1 - p) / n).sum() + math.sqrt(math.log(1e6) / (2 * n))


def test_lattice_factor_graph_samples_the_conditional_potts_model():
    height, width, n = 2, 3, 30_000
    generator = torch.Generator().manual_seed(0)
    model = PottsModel(PottsConfig(height=height, width=width, classes=2))
    with torch.no_grad():
        model.bias.copy_(1.2 * torch.randn(model.bias.shape, generator=generator))
        model.coupling.copy_(torch.tensor([0.9, -0.6]))
    graph, params, to_images = thrml_graph(model)  # the jobs' wiring of a trained model
    assert isinstance(graph, LatticeFactorGraph) and params[0].shape == (2, height * width, 4)
    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=5)
    labels = np.arange(n) % 2
    start = graph.to_state(np.zeros((n, height, width), dtype=np.uint8))
    run = sampler.run(params, start, graph.clamp(labels, n), 20, seed=1, to_images=to_images, checkpoints=(5,))
    assert run.images.shape == (n, height, width) and set(run.snapshots) == {5}
    states = torch.tensor(list(itertools.product(range(4), repeat=height * width)), dtype=torch.uint8)
    states = states.view(-1, height, width)
    for k in (0, 1):
        with torch.no_grad():
            p = torch.softmax(-model.energy(states, torch.full((len(states),), k)).double(), 0).numpy()
        assert total_variation(run.images[labels == k], p) < tv_bound(p, n // 2)
    # THRML's factor energies are the model's energies
    energies = graph.energy(run.images[:50], params[0], params[1], params[2], labels[:50])
    with torch.no_grad():
        expected = model.energy(torch.from_numpy(run.images[:50]), torch.from_numpy(labels[:50])).numpy()
    np.testing.assert_allclose(energies, expected, atol=1e-5)
    with pytest.raises(ValueError):
        graph.clamp(None, n)


def test_rbm_layer_program_samples_the_clamped_conditional():
    n = 30_000
    torch.manual_seed(1)
    model = CategoricalRBM(RBMConfig(height=2, width=2, levels=4, hidden=3, classes=3, init_std=0.8))
    with torch.no_grad():
        model.visible_bias.normal_()
        model.hidden_bias.normal_()
    graph, params, to_images = thrml_graph(model)
    assert isinstance(graph, RBMLayerGraph) and len(params) == 4  # weights, biases and the label weights
    sampler = ThrmlSampler(graph.program, graph.blocks, sweeps_per_call=10)
    labels = np.arange(n) % 3
    start = graph.to_state(np.zeros((n, 2, 2), dtype=np.uint8), np.random.default_rng(0))
    run = sampler.run(params, start, graph.clamp(labels, n), 30, seed=2, to_images=to_images)
    assert run.final_state[0].shape == (n, 1, 3)  # the hidden layer's last state, for the mode view
    states = torch.tensor(list(itertools.product(range(4), repeat=4)), dtype=torch.uint8).view(-1, 2, 2)
    for k in range(3):
        with torch.no_grad():
            p = torch.softmax(-model.free_energy(states, torch.full((len(states),), k)).double(), 0).numpy()
        assert total_variation(run.images[labels == k], p) < tv_bound(p, n // 3)
    with pytest.raises(ValueError):
        sampler.run(params, start, graph.clamp(labels, n), 15, seed=2, to_images=lambda s: s)


@pytest.mark.parametrize("threads, expected", [(1, "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"),
                                               (2, "")])
def test_configure_jax_writes_only_flags_xla_accepts(monkeypatch: pytest.MonkeyPatch, threads: int,
                                                     expected: str) -> None:
    """One thread: the eigen switch and the thread count together; more: XLA's default (a bare
    intra_op_parallelism_threads=N is read as a file name and aborts XLA)."""
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    configure_jax(threads)
    assert os.environ["XLA_FLAGS"] == expected
