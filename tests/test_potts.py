"""Lattice Potts EBMs and their samplers: exactness on lattices small enough to enumerate."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rgbench.evaluation.samples import steps_to_digit
from rgbench.experiments.potts_ebm import chain_labels, chain_start
from rgbench.experiments.sampler_bench import run_bench, speedups, timed_runs
from rgbench.models.pcd import LatticePCDTrainer, LatticeTrainConfig
from rgbench.models.potts import (IndependentModel, PottsConfig, PottsModel, ais_potts, integrated_autocorrelation_time,
                                  raise_potts)
from rgbench.models.rbm import power_schedule
from rgbench.models.potts_samplers import CheckerboardGibbs, _class_blocks, numba_available, sequential_gibbs

H, W = 2, 3  # 4^6 = 4096 states
BACKENDS = ["torch"] + (["numba"] if numba_available() else [])


def all_states(height: int = H, width: int = W) -> torch.Tensor:
    states = list(itertools.product(range(4), repeat=height * width))
    return torch.tensor(states, dtype=torch.uint8).view(-1, height, width)


def small_model(classes: int = 1, seed: int = 0, w_h: float = 0.9, w_v: float = -0.6) -> PottsModel:
    generator = torch.Generator().manual_seed(seed)
    model = PottsModel(PottsConfig(height=H, width=W, classes=classes))
    with torch.no_grad():
        model.bias.copy_(1.2 * torch.randn(model.bias.shape, generator=generator))
        model.coupling.copy_(torch.tensor([w_h, w_v]))
    return model


def exact_distribution(model: PottsModel, label: int | None = None) -> np.ndarray:
    states = all_states(model.config.height, model.config.width)
    labels = None if label is None else torch.full((len(states),), label)
    with torch.no_grad():
        return torch.softmax(-model.energy(states, labels).double(), 0).numpy()


def state_codes(x: torch.Tensor) -> np.ndarray:
    flat = x.reshape(len(x), -1).long().numpy()
    return (flat * (4 ** np.arange(flat.shape[1])[::-1])).sum(1)


def tv_bound(p: np.ndarray, n: int, delta: float = 1e-6) -> float:
    """E[TV(empirical, p)] <= 1/2 sum_i sqrt(p_i (1 - p_i) / n) (Jensen per state), plus a
    McDiarmid deviation: one sample moves TV by at most 1/n, so P(TV > E + t) <= exp(-2 n t^2)."""
    return 0.5 * np.sqrt(p * (1 - p) / n).sum() + math.sqrt(math.log(1 / delta) / (2 * n))


def total_variation(codes: np.ndarray, p: np.ndarray) -> float:
    empirical = np.bincount(codes, minlength=len(p)) / len(codes)
    return 0.5 * np.abs(empirical - p).sum()


# 100,000 independent chains: the bound is then ~0.07 while the alternative model used
# to show the test's power sits at TV ~0.3 from the true one.
N_CHAINS = {"numba": 100_000, "torch": 100_000, "sequential": 100_000}
SWEEPS = 20  # the 2x3 model mixes in a few sweeps; 20 leaves no visible burn-in bias


@pytest.fixture(autouse=True)
def one_thread():
    """Single-threaded torch: these tests run beside other jobs on a small shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_sampler_matches_enumeration(backend):
    model = small_model()
    p = exact_distribution(model)
    sampler = CheckerboardGibbs(H, W, backend=backend)
    sampler.set_parameters(*model.sampler_parameters())
    generator = torch.Generator().manual_seed(1)
    n = N_CHAINS[backend]
    start = torch.randint(0, 4, (n, H, W), dtype=torch.uint8, generator=generator)
    padded = sampler.sweep(sampler.pad(start), SWEEPS, generator)
    codes = state_codes(sampler.unpad(padded))
    bound = tv_bound(p, n)
    assert total_variation(codes, p) < bound
    # the bound has power: the same samples are far from a model with other couplings
    assert total_variation(codes, exact_distribution(small_model(w_h=0.3, w_v=0.3))) > 2 * bound


def test_sequential_sampler_matches_enumeration():
    model = small_model(seed=3)
    p = exact_distribution(model)
    bias, w_h, w_v = model.sampler_parameters()
    generator = torch.Generator().manual_seed(2)
    n = N_CHAINS["sequential"]
    x = torch.randint(0, 4, (n, H, W), dtype=torch.uint8, generator=generator)
    sequential_gibbs(x, bias, w_h, w_v, SWEEPS, generator)
    assert total_variation(state_codes(x), p) < tv_bound(p, n)
    assert total_variation(state_codes(x), exact_distribution(small_model(seed=3, w_h=0.3, w_v=0.3))) > \
        2 * tv_bound(p, n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_conditional_sampling_uses_each_chains_bias(backend):
    model = small_model(classes=2, seed=5)
    sampler = CheckerboardGibbs(H, W, backend=backend)
    sampler.set_parameters(*model.sampler_parameters())
    generator = torch.Generator().manual_seed(4)
    n = N_CHAINS[backend]
    labels = torch.arange(n) % 2
    padded = sampler.sweep(sampler.pad(torch.zeros(n, H, W, dtype=torch.uint8)), SWEEPS, generator, labels=labels)
    x = sampler.unpad(padded)
    for k in (0, 1):
        p = exact_distribution(model, label=k)
        assert total_variation(state_codes(x[labels == k]), p) < tv_bound(p, n // 2)
    with pytest.raises(ValueError):
        sampler.sweep(padded, 1, generator, labels=torch.full((n,), 2))


def test_numba_blocks_group_chains_by_class():
    starts, stops, classes = _class_blocks(np.array([0] * 600 + [3] * 10 + [1] * 5), block=256)
    assert starts.tolist() == [0, 256, 512, 600, 610]
    assert stops.tolist() == [256, 512, 600, 610, 615]
    assert classes.tolist() == [0, 0, 0, 3, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_lattice_and_interleaved_labels(backend):
    """A 3x3 lattice (odd sides) with labels interleaved in chain order: each chain keeps its
    own label's distribution, and the state keeps its chain order."""
    generator = torch.Generator().manual_seed(9)
    model = PottsModel(PottsConfig(height=3, width=3, classes=2))
    with torch.no_grad():
        model.bias.copy_(torch.randn(model.bias.shape, generator=generator))
        model.bias[1, :, :, 3] += 3.0  # class 1 strongly prefers level 3
        model.coupling.copy_(torch.tensor([0.5, -0.4]))
    sampler = CheckerboardGibbs(3, 3, backend=backend)
    sampler.set_parameters(*model.sampler_parameters())
    n = 40_000
    labels = torch.arange(n) % 2
    padded = sampler.sweep(sampler.pad(torch.zeros(n, 3, 3, dtype=torch.uint8)), 15, generator, labels=labels)
    x = sampler.unpad(padded)
    for k in (0, 1):
        states = all_states(3, 3)
        with torch.no_grad():
            p = torch.softmax(-model.energy(states, torch.full((len(states),), k)).double(), 0).numpy()
        assert total_variation(state_codes(x[labels == k]), p) < tv_bound(p, n // 2)


def test_sampler_is_reproducible_and_checks_inputs():
    model = small_model()
    sampler = CheckerboardGibbs(H, W)
    with pytest.raises(RuntimeError):
        sampler.sweep(sampler.pad(torch.zeros(4, H, W)), 1)
    sampler.set_parameters(*model.sampler_parameters())
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(7)
        runs.append(sampler.unpad(sampler.sweep(sampler.pad(torch.zeros(64, H, W)), 5, generator)))
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError):
        sampler.set_parameters(torch.zeros(1, 3, 3, 4), 0.0, 0.0)
    with pytest.raises(ValueError):
        sampler.sweep(torch.zeros(4, 10, dtype=torch.uint8), 1)


def test_pcd_runs_k_sweeps_with_current_parameters():
    model = small_model()
    chains = torch.zeros(256, H, W, dtype=torch.uint8)
    trainer = LatticePCDTrainer(model, chains.clone(), None, sweeps=3, persistent=True)
    data = (torch.randint(0, 4, (32, H, W), dtype=torch.uint8), torch.zeros(32, dtype=torch.long))
    # exactly k = 3 sweeps of the current model: replaying them by hand gives the same chains
    torch.manual_seed(11)
    negative, _ = trainer.negatives(*data)
    torch.manual_seed(11)
    replay = CheckerboardGibbs(H, W)
    replay.set_parameters(*model.sampler_parameters())
    expected = replay.unpad(replay.sweep(replay.pad(chains), 3))
    assert torch.equal(negative, expected)
    assert torch.equal(trainer.chains, expected)  # persistent: the chains moved
    assert not torch.equal(expected, chains)
    # an update that makes level 3 overwhelming must show in the very next negatives
    with torch.no_grad():
        model.bias[..., 3] += 30.0
    negative, _ = trainer.negatives(*data)
    assert (negative == 3).all()
    # and the surrogate loss moves the parameters through the optimizer
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    before = model.bias.detach().clone()
    trainer.loss(data).backward()
    optimizer.step()
    assert not torch.equal(before, model.bias.detach())
    with pytest.raises(ValueError):
        LatticeTrainConfig(epochs=1, batch_size=10, lr=0.01, chains=10, sweeps=0, persistent=True, val_images=10)
    with pytest.raises(ValueError, match="val_images"):
        LatticeTrainConfig(epochs=1, batch_size=10, lr=0.01, chains=10, sweeps=1, persistent=True, val_images=0)


def test_cd_restarts_from_the_data():
    model = small_model()
    trainer = LatticePCDTrainer(model, torch.zeros(8, H, W, dtype=torch.uint8), None, sweeps=1, persistent=False)
    data = torch.full((16, H, W), 2, dtype=torch.uint8)
    negative, _ = trainer.negatives(data, torch.zeros(16, dtype=torch.long))
    assert negative.shape == data.shape
    assert torch.equal(trainer.chains, torch.zeros(8, H, W, dtype=torch.uint8))


def test_ais_potts_matches_exact_log_partition():
    model = small_model(seed=8)
    states = all_states()
    with torch.no_grad():
        exact = float(torch.logsumexp(-model.energy(states).double(), 0))
    generator = torch.Generator().manual_seed(0)
    base = IndependentModel(torch.log_softmax(torch.randn(1, H, W, 4, generator=generator), -1).numpy())
    result = ais_potts(model, base, chains=1000, betas=power_schedule(200, 2.0), generator=generator)
    assert result.log_z_se < 0.05
    assert abs(result.log_z - exact) < max(4 * result.log_z_se, 0.02)


def test_ais_potts_per_class_uses_that_class():
    model = small_model(classes=2, seed=4)
    states = all_states()
    generator = torch.Generator().manual_seed(1)
    base = IndependentModel(torch.log_softmax(torch.randn(2, H, W, 4, generator=generator), -1).numpy())
    for label in (0, 1):
        with torch.no_grad():
            exact = float(torch.logsumexp(-model.energy(states, torch.full((len(states),), label)).double(), 0))
        result = ais_potts(model, base, chains=1000, betas=power_schedule(200, 2.0), generator=generator, label=label)
        assert abs(result.log_z - exact) < max(4 * result.log_z_se, 0.02)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raise_potts_is_a_lower_bound_whose_exponential_is_unbiased(backend):
    model = small_model(classes=2, seed=6)
    states = all_states()
    generator = torch.Generator().manual_seed(2)
    base = IndependentModel(torch.log_softmax(torch.randn(2, H, W, 4, generator=generator), -1).numpy())
    picks = torch.tensor([17, 1000, 3000])
    with torch.no_grad():
        log_p = torch.log_softmax(-model.energy(states, torch.ones(len(states), dtype=torch.long)).double(), 0)
    images = states[picks].repeat_interleave(3000, 0)
    sampler = CheckerboardGibbs(H, W, backend=backend)
    estimates = raise_potts(model, base, images, power_schedule(50, 2.0), generator, sampler, label=1).reshape(3, -1)
    truth = log_p[picks].numpy()
    weights = np.exp(estimates - estimates.max(1, keepdims=True))
    se = weights.std(1) / weights.mean(1) / np.sqrt(weights.shape[1])  # of the log of the mean weight
    assert (np.abs(np.log(np.exp(estimates).mean(1)) - truth) < 4 * se + 0.01).all()
    assert (estimates.mean(1) <= truth + 0.01).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_potential_is_minus_the_energy(backend):
    model = small_model(seed=7)
    x = all_states()[::97]
    sampler = CheckerboardGibbs(H, W, backend=backend)
    bias, w_h, w_v = model.sampler_parameters()
    value = sampler.log_potential(sampler.pad(x), bias[0], w_h, w_v)
    with torch.no_grad():
        np.testing.assert_allclose(value, -model.energy(x).double().numpy(), atol=1e-5)


def test_independent_nll_exact_by_hand():
    data = np.array([[[0, 3]], [[0, 2]], [[1, 3]]], dtype=np.uint8)  # three 1x2 images
    model = IndependentModel.fit(data, alpha=1.0)
    # site 0: counts (2, 1, 0, 0) + 1 over 3 + 4; site 1: counts (0, 0, 1, 2) + 1 over 7
    p0 = np.array([3, 2, 1, 1]) / 7
    p1 = np.array([1, 1, 2, 3]) / 7
    expected = -np.mean([np.log(p0[0] * p1[3]), np.log(p0[0] * p1[2]), np.log(p0[1] * p1[3])])
    assert model.nll(data) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(np.exp(model.log_probs).sum(-1), 1.0)
    with pytest.raises(ValueError):
        IndependentModel.fit(np.full((2, 1, 2), 4, dtype=np.uint8))
    # as a Potts model it is the same normalised distribution
    potts = IndependentModel.fit(all_states(1, 2)[:9].numpy()).as_potts()
    with torch.no_grad():
        assert float(torch.logsumexp(-potts.energy(all_states(1, 2)).double(), 0)) == pytest.approx(0.0, abs=1e-5)


def test_pseudo_log_likelihood_matches_brute_force():
    model = small_model(seed=2)
    x = all_states()[torch.tensor([5, 700, 4000])]
    with torch.no_grad():
        fast = model.pseudo_log_likelihood(x)
        for n in range(len(x)):
            total = 0.0
            for r, c in itertools.product(range(H), range(W)):
                variants = x[n].repeat(4, 1, 1)
                variants[:, r, c] = torch.arange(4)
                total += float(torch.log_softmax(-model.energy(variants), 0)[x[n, r, c].long()])
            assert float(fast[n]) == pytest.approx(total, abs=1e-4)


def test_autocorrelation_time_of_ar1():
    rng = np.random.default_rng(0)
    phi, chains, steps = 0.6, 50, 4000
    x = np.zeros((chains, steps))
    noise = rng.normal(size=(chains, steps))
    for t in range(1, steps):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    assert integrated_autocorrelation_time(x) == pytest.approx((1 + phi) / (1 - phi), rel=0.1)


def test_steps_to_digit_is_each_chains_first_recognised_checkpoint():
    recognised = np.array([[0, 0, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0]], dtype=bool)  # 3 checkpoints x 4 chains
    median, first = steps_to_digit(recognised, [1, 10, 100])
    assert first.tolist() == [10, 100, 1, np.inf]  # chain 0 is first recognised at 10 (and counts from there)
    assert median == 55.0
    assert steps_to_digit(np.zeros((2, 3), dtype=bool), [1, 2])[0] == np.inf


def test_conditional_chains_start_from_their_digits_independent_model():
    # class k of this 28 x 28 independent model puts all its mass on level k % 4
    log_probs = np.full((10, 28, 28, 4), -np.inf)
    for k in range(10):
        log_probs[k, ..., k % 4] = 0.0
    classes = IndependentModel(log_probs)
    generator = torch.Generator().manual_seed(0)
    labels = chain_labels("rbm_cond", 12)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    start = chain_start("rbm_cond", labels, 12, "class_independent", classes, generator)
    assert start.shape == (12, 28, 28) and start.dtype == torch.uint8
    assert [set(image.unique().tolist()) for image in start] == [{k % 4} for k in labels]
    # uniform noise for an unconditional model or when asked; every level appears
    for kind, how in (("rbm", "class_independent"), ("rbm_cond", "uniform")):
        noise = chain_start(kind, chain_labels(kind, 5), 5, how, classes, generator)
        assert noise.shape == (5, 28, 28) and set(noise.unique().tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="conditional_start"):
        chain_start("rbm_cond", labels, 12, "data", classes, generator)


def test_sampler_bench_row():
    row = run_bench("block", 16, 0.01, 2, 0)
    assert row["chains"] == 16 and row["sweeps"] >= 1 and row["flips_per_ns"] > 0
    assert row["flips_per_ns"] == pytest.approx(16 * 784 * row["sweeps"] / (row["median_seconds"] * 1e9))
    assert speedups([{"implementation": "thrml", "chains": 64, "flips_per_ns": 0.01},
                     {"implementation": "block", "chains": 64, "flips_per_ns": 0.2}]) == {64: pytest.approx(20.0)}
    with pytest.raises(ValueError):
        run_bench("numpy", 16, 0.01, 1, 0)


def test_timed_runs_calibrate_in_units():
    calls = []
    sweeps, walls, cpus = timed_runs(lambda n: calls.append(n), 1e-9, 3, unit=10)
    assert sweeps % 10 == 0 and len(walls) == len(cpus) == 3 and calls[-3:] == [sweeps] * 3
    assert timed_runs(lambda n: None, 1.0, 2, fixed_sweeps=7)[0] == 7


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_threaded_numba_sweeps_equal_single_threaded_ones():
    """Each chain's random stream is keyed by its index, so spreading blocks of chains over
    threads changes nothing; and the threaded kernel is its own function: numba caches
    compiled code per function, and one function compiled both ways once shared an entry,
    which left the 'threaded' kernel running the serial code."""
    from rgbench.models import potts_samplers

    assert potts_samplers._sweep_parallel.py_func is not potts_samplers._sweep_serial.py_func
    assert potts_samplers._sweep_parallel.targetoptions.get("parallel") is True
    model = small_model(classes=2, seed=3)
    start = torch.randint(0, 4, (600, H, W), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    labels = torch.arange(600) % 2
    finals = []
    for threads in (1, 2):
        sampler = CheckerboardGibbs(H, W, backend="numba", threads=threads)
        sampler.set_parameters(*model.sampler_parameters())
        state = sampler.pad(start.clone())
        sampler.sweep(state, 7, torch.Generator().manual_seed(5), labels)
        finals.append(sampler.unpad(state))
    assert torch.equal(finals[0], finals[1])
    assert not torch.equal(finals[0], start)


class LevelClassifier:
    """A stand-in reference classifier: an image whose top-left pixel is level l > 0 is
    digit l with confidence 0.95; level 0 is nobody's digit (uniform probabilities)."""

    def predict_proba(self, grey: np.ndarray) -> np.ndarray:
        level = np.rint(np.asarray(grey)[:, 0, 0] * 3).astype(int)
        probs = np.full((len(grey), 10), 0.05 / 9)
        probs[np.arange(len(grey)), level] = 0.95
        probs[level == 0] = 0.1
        return probs

    def features(self, grey: np.ndarray) -> np.ndarray:
        return np.asarray(grey, dtype=np.float64).reshape(len(grey), -1)[:, :2]


def test_scores_need_only_samples_and_labels(tmp_path):
    from rgbench.evaluation.samples import SampleRun, ceiling_scores, relative_to_ceiling, score_samples

    np.savez(tmp_path / "stats.npz", mu=np.zeros(2), sigma=np.eye(2))
    flat = lambda levels: np.repeat(np.asarray(levels, dtype=np.uint8), 4).reshape(-1, 2, 2)  # noqa: E731
    labels = np.array([1, 2, 3, 1])
    run = SampleRun(flat([1, 2, 3, 2]), {1: flat([0, 2, 3, 0]), 5: flat([1, 2, 3, 2])}, labels, 0.5, 0.25,
                    start=flat([0, 0, 3, 1]))
    metrics, extra = score_samples(LevelClassifier(), run, labels, [1, 5], tmp_path / "stats.npz")
    # chains become their digit at sweeps 5, 1, 1 and never (the last drifts to digit 2)
    assert metrics["steps_to_digit"] == 3.0 and metrics["digit_fraction"] == 0.75
    assert metrics["seconds_to_digit"] == 1.5 and metrics["chain_sweeps_per_cpu_second"] == 16.0
    assert extra["digit_fraction_by_sweep"] == {1: 0.5, 5: 0.75}
    assert metrics["recognisable_fraction"] == 1.0 and metrics["conditional_recognition"] == 0.75
    assert metrics["start_digit_fraction"] == 0.5 and metrics["start_conditional_recognition"] == 0.5
    assert "fid_mode" not in metrics  # no mode view in this run
    ceiling = ceiling_scores(LevelClassifier(), flat([1, 0, 3, 3]), np.array([1, 5, 3, 0]), 3, tmp_path / "stats.npz")
    assert ceiling["ceiling_recognisable_fraction"] == pytest.approx(2 / 3)  # the first 3 images only
    assert ceiling["ceiling_conditional_recognition"] == pytest.approx(2 / 3)
    metrics.update(ceiling)
    relative_to_ceiling(metrics)
    assert metrics["recognisable_fraction_vs_ceiling"] == pytest.approx(1.5)


def test_parameter_counts_are_the_free_parameters():
    assert PottsModel(PottsConfig()).parameter_count() == 28 * 28 * 4 + 2  # the seed's 3,138
    assert PottsModel(PottsConfig(classes=10)).parameter_count() == 10 * 28 * 28 * 4 + 2
