"""The label-conditional DBN (rgbench.models.dbn) on tiny synthetic data: sampling
contract, determinism, label clamping, exact small-case conditionals, save/load, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rgbench.data.preprocess import LevelData
from rgbench.models.dbn import DBN, BernoulliRBM, DBNConfig, train_dbn


def synthetic_levels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like toy images: class k lights a 6x6 block at one of 10 places, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = (rng.random((n, 28, 28)) < 0.02).astype(np.uint8)
    for i, k in enumerate(labels):
        row, col = 2 + 12 * (k // 5), 1 + 5 * (k % 5)
        x[i, row:row + 6, col:col + 5] = rng.integers(2, 4, (6, 5))
    return x, labels.astype(np.int64)


@pytest.fixture(scope="module")
def tiny_data() -> LevelData:
    train_x, train_y = synthetic_levels(400, 0)
    val_x, val_y = synthetic_levels(50, 1)
    return LevelData(train_x, train_y, val_x, val_y, val_x[:0], val_y[:0])


def tiny_config(**overrides: object) -> DBNConfig:
    # big enough steps for the labels to steer the top RBM within a second of training
    settings = dict(hidden=[24, 16], epochs=[2, 4], batch_size=10, chains=20, lr=0.1, upper_lr=0.1,
                    label_lr_factor=1.0, discriminative_weight=1.0, init_std=0.1, sample_sweeps=3)
    settings.update(overrides)
    return DBNConfig(**settings)


@pytest.fixture(scope="module")
def tiny_dbn(tiny_data: LevelData) -> DBN:
    return train_dbn(tiny_config(), tiny_data, seed=0)


def test_samples_are_level_images(tiny_dbn: DBN) -> None:
    for labels in (None, np.arange(7) % 10):
        images = tiny_dbn.sample(7, labels, generator=torch.Generator().manual_seed(0))
        assert images.shape == (7, 28, 28) and images.dtype == np.uint8
        assert images.min() >= 0 and images.max() <= 3
    snaps = tiny_dbn.sample(5, None, 4, torch.Generator().manual_seed(0), down_pass="probabilities",
                            snapshots=[1, 2], start="penultimate")
    assert sorted(snaps) == [1, 2, 4] and all(s.shape == (5, 28, 28) for s in snaps.values())


def test_three_layer_stack_samples(tiny_data: LevelData) -> None:
    model = train_dbn(tiny_config(hidden=[16, 8, 12], epochs=[1, 1, 1]), tiny_data, seed=0)
    assert model.features(torch.from_numpy(tiny_data.val_x[:4]), depth=1).shape == (4, 8)
    assert model.sample(3, [0, 1, 2], 2, torch.Generator().manual_seed(0)).shape == (3, 28, 28)


def test_fixed_seed_is_bit_identical(tiny_data: LevelData, tiny_dbn: DBN) -> None:
    again = train_dbn(tiny_config(), tiny_data, seed=0)
    for (name, a), (_, b) in zip(tiny_dbn.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    first = tiny_dbn.sample(20, np.arange(20) % 10, 5, torch.Generator().manual_seed(3))
    second = again.sample(20, np.arange(20) % 10, 5, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(first, second)
    other = train_dbn(tiny_config(), tiny_data, seed=1)
    assert not torch.equal(other.top.weight, tiny_dbn.top.weight)


def block_mass(images: np.ndarray, k: int) -> float:
    """Share of lit pixels in class k's block of synthetic_levels."""
    row, col = 2 + 12 * (k // 5), 1 + 5 * (k % 5)
    return float((images[:, row:row + 6, col:col + 5] > 0).mean())


def test_label_clamping_steers_samples(tiny_dbn: DBN) -> None:
    assert tiny_dbn.record["val_label_accuracy"] > 0.8  # the top RBM ties the labels to the features
    own, other = [], []
    for k in range(10):
        images = tiny_dbn.sample(50, np.full(50, k), 10, torch.Generator().manual_seed(0))
        own.append(block_mass(images, k))
        other.append(np.mean([block_mass(images, j) for j in range(10) if j != k]))
    # clamped to k, the chains light class k's block more than the others' (measured ~0.20 vs ~0.11)
    assert np.mean(own) > 1.4 * np.mean(other)
    zeros = tiny_dbn.sample(50, np.zeros(50, dtype=np.int64), 3, torch.Generator().manual_seed(0))
    sevens = tiny_dbn.sample(50, np.full(50, 7), 3, torch.Generator().manual_seed(0))
    assert not np.array_equal(zeros, sevens)


def brute_force(rbm: BernoulliRBM) -> dict[tuple[int, ...], float]:
    """-E(v, h, y) of every configuration (v bits, h bits, y) of a tiny conditional RBM, by
    its definition."""
    w, b, c = (rbm.weight.detach().double(), rbm.visible_bias.detach().double(),
               rbm.hidden_bias.detach().double())
    u, d = rbm.label_weight.detach().double(), rbm.label_bias.detach().double()
    table = {}
    for bits in itertools.product((0, 1), repeat=rbm.visible + rbm.hidden):
        v = torch.tensor(bits[:rbm.visible], dtype=torch.float64)
        h = torch.tensor(bits[rbm.visible:], dtype=torch.float64)
        for y in range(rbm.classes):
            table[bits + (y,)] = float(b @ v + c @ h + v @ w @ h + d[y] + u[y] @ h)
    return table


@torch.no_grad()
def test_bernoulli_rbm_matches_enumeration() -> None:
    torch.manual_seed(0)
    rbm = BernoulliRBM(visible=3, hidden=2, classes=2, init_std=1.0)
    with torch.no_grad():
        for p in (rbm.visible_bias, rbm.hidden_bias, rbm.label_bias):
            p.normal_()
    table = brute_force(rbm)
    states = torch.tensor(list(itertools.product((0, 1), repeat=3)), dtype=torch.float32)
    for v in states:
        key = tuple(int(a) for a in v)
        for y in range(2):
            terms = [table[key + hb + (y,)] for hb in itertools.product((0, 1), repeat=2)]
            free = -math.log(sum(math.exp(t) for t in terms))
            got = float(rbm.free_energy(v[None], torch.tensor([y])).detach())
            assert got == pytest.approx(free, abs=1e-5)
            # p(h_j = 1 | v, y) by summing the joint over the other hidden unit
            for j in range(2):
                on = sum(math.exp(table[key + hb + (y,)]) for hb in itertools.product((0, 1), repeat=2) if hb[j])
                expected = on / math.exp(-free)
                assert float(rbm.hidden_probs(v[None], torch.tensor([y]))[0, j]) == pytest.approx(expected, abs=1e-6)
        # p(y | v): hidden units summed out, labels normalised
        joint = [sum(math.exp(table[key + hb + (y,)]) for hb in itertools.product((0, 1), repeat=2)) for y in range(2)]
        posterior = np.array(joint) / sum(joint)
        np.testing.assert_allclose(rbm.label_log_posterior(v[None]).exp()[0].detach().numpy(), posterior, atol=1e-6)
    # p(v_i = 1 | h), which does not depend on y
    for hb in itertools.product((0, 1), repeat=2):
        h = torch.tensor([hb], dtype=torch.float32)
        for i in range(3):
            weights = {vb: math.exp(table[vb + hb + (0,)]) for vb in itertools.product((0, 1), repeat=3)}
            expected = sum(p for vb, p in weights.items() if vb[i]) / sum(weights.values())
            assert float(rbm.visible_probs(h)[0, i]) == pytest.approx(expected, abs=1e-6)


def test_pcd_statistics_are_the_free_energy_gradient() -> None:
    """Data minus chain statistics = -d/dtheta [mean F(data) - mean F(chains)] exactly."""
    torch.manual_seed(1)
    rbm = BernoulliRBM(visible=5, hidden=4, classes=3, init_std=0.5)
    v, chains = torch.rand(6, 5), (torch.rand(7, 5) < 0.5).float()
    y, chain_y = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([2, 2, 1, 0, 0, 1, 1])
    stats = rbm.pcd_statistics(v, y, chains, chain_y)
    gap = rbm.free_energy(v, y).mean() - rbm.free_energy(chains, chain_y).mean()
    gap.backward()
    for name, p in rbm.named_parameters():
        torch.testing.assert_close(stats[name], -p.grad, msg=name)


def test_save_load_roundtrip(tiny_dbn: DBN, tmp_path) -> None:
    path = tmp_path / "dbn.pt"
    tiny_dbn.save(path)
    loaded = DBN.load(path)
    assert loaded.config == tiny_dbn.config and loaded.record["seed"] == 0
    for labels in (None, np.arange(12) % 10):
        a = tiny_dbn.sample(12, labels, 4, torch.Generator().manual_seed(5))
        b = loaded.sample(12, labels, 4, torch.Generator().manual_seed(5))
        np.testing.assert_array_equal(a, b)
    torch.save({"kind": "rbm"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DBN"):
        DBN.load(tmp_path / "other.pt")


def test_bad_inputs_raise(tiny_dbn: DBN, tiny_data: LevelData) -> None:
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="labels must lie"):
        tiny_dbn.sample(2, [0, 10], 1, gen)
    with pytest.raises(ValueError, match="labels must lie"):
        tiny_dbn.sample(2, [-1, 3], 1, gen)
    with pytest.raises(ValueError, match="expected 3 labels"):
        tiny_dbn.sample(3, [1, 2], 1, gen)
    with pytest.raises(ValueError, match="gibbs_sweeps"):
        tiny_dbn.sample(2, None, 0, gen)
    with pytest.raises(ValueError, match="snapshots"):
        tiny_dbn.sample(2, None, 3, gen, snapshots=[5])
    with pytest.raises(ValueError, match="down_pass"):
        tiny_dbn.sample(2, None, 3, gen, down_pass="mean")
    with pytest.raises(ValueError, match="start"):
        tiny_dbn.sample(2, None, 3, gen, start="data")
    with pytest.raises(ValueError, match="at least 2 RBMs"):
        DBNConfig(hidden=[16], epochs=[1])
    with pytest.raises(ValueError, match="hidden unit"):
        DBNConfig(hidden=[16, 0], epochs=[1, 1])
    with pytest.raises(ValueError, match="epochs"):
        DBNConfig(hidden=[16, 8], epochs=[1])
    with pytest.raises(ValueError, match="features"):
        DBNConfig(hidden=[16, 8], epochs=[1, 1], features="means")
    bad = LevelData(tiny_data.train_x[:, :14], tiny_data.train_y, tiny_data.val_x, tiny_data.val_y,
                    tiny_data.test_x, tiny_data.test_y)
    with pytest.raises(ValueError, match="training levels"):
        train_dbn(tiny_config(), bad, seed=0)
    wrong = LevelData(tiny_data.train_x, tiny_data.train_y + 5, tiny_data.val_x, tiny_data.val_y,
                      tiny_data.test_x, tiny_data.test_y)
    with pytest.raises(ValueError, match="training labels"):
        train_dbn(tiny_config(), wrong, seed=0)


def test_discriminative_direction_is_the_label_log_likelihood_gradient() -> None:
    torch.manual_seed(2)
    rbm = BernoulliRBM(visible=5, hidden=4, classes=3, init_std=0.5)
    v, y = torch.rand(6, 5), torch.tensor([0, 1, 2, 2, 1, 0])
    direction = rbm.discriminative_direction(v, y)
    rbm.label_log_posterior(v).gather(1, y[:, None]).mean().backward()
    for name, p in rbm.named_parameters():
        expected = torch.zeros_like(p) if p.grad is None else p.grad  # p(y | v) has no visible bias
        torch.testing.assert_close(direction[name], expected, msg=name)
