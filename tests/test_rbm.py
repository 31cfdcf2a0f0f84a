"""Categorical RBMs: energies, sampling, PCD statistics, AIS and RAISE against enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rgbench.data.preprocess import LevelData
from rgbench.evaluation.likelihood import class_prior, mixture_log_prob
from rgbench.models.pcd import MomentumSchedule, RBMPCDTrainer, RBMTrainConfig, train_rbm
from rgbench.models.potts import IndependentModel
from rgbench.models.rbm import (CategoricalRBM, RBMConfig, ais_rbm, power_schedule, raise_log_prob,
                                sample_above_reference)
import rgbench.models.rbm as rbm_module
from test_potts import one_thread  # noqa: F401  (autouse: single-threaded torch on a shared CPU)

SIDE = 2  # 4 sites x 4 levels: 256 visible states
HIDDEN = 3


def tiny_rbm(classes: int = 0, seed: int = 0) -> CategoricalRBM:
    torch.manual_seed(seed)
    model = CategoricalRBM(RBMConfig(height=SIDE, width=SIDE, levels=4, hidden=HIDDEN, classes=classes, init_std=0.8))
    with torch.no_grad():
        model.visible_bias.normal_()
        model.hidden_bias.normal_()
        model.label_bias.normal_()
    return model


def all_images() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(4), repeat=SIDE * SIDE)), dtype=torch.uint8).view(-1, SIDE, SIDE)


def brute_force_log_f(model: CategoricalRBM, images: torch.Tensor) -> torch.Tensor:
    """log sum_{h, y} exp(-E(v, h, y)) by enumerating h (and y), from the energy itself."""
    hidden = torch.tensor(list(itertools.product(range(2), repeat=HIDDEN)), dtype=torch.float32)
    w = torch.nn.functional.pad(model.weight.view(SIDE * SIDE, 3, HIDDEN), (0, 0, 1, 0))  # (S, 4, H), level 0 = 0
    b = torch.nn.functional.pad(model.visible_bias.view(SIDE * SIDE, 3), (1, 0))
    out = []
    for v in images.view(len(images), -1).long():
        sites = torch.arange(SIDE * SIDE)
        field = b[sites, v].sum()
        coupling = hidden @ w[sites, v].sum(0) + hidden @ model.hidden_bias
        if model.conditional:
            terms = [field + coupling + model.label_bias[y] + hidden @ model.label_weight[y]
                     for y in range(model.config.classes)]
            out.append(torch.logsumexp(torch.cat(terms), 0))
        else:
            out.append(torch.logsumexp(field + coupling, 0))
    return torch.stack(out)


def base_log_probs(seed: int = 1) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(SIDE * SIDE, 4, generator=generator), -1).numpy()


@pytest.mark.parametrize("classes", [0, 3])
def test_unnormalised_log_prob_is_the_energy_summed_over_h_and_y(classes):
    model = tiny_rbm(classes)
    images = all_images()
    with torch.no_grad():
        torch.testing.assert_close(model.unnormalised_log_prob(images), brute_force_log_f(model, images),
                                   atol=1e-4, rtol=0)
        if not classes:
            torch.testing.assert_close(-model.free_energy(images), brute_force_log_f(model, images), atol=1e-4, rtol=0)


@pytest.mark.parametrize("classes", [0, 3])
def test_ais_and_raise_match_enumeration(classes):
    model = tiny_rbm(classes, seed=2)
    with torch.no_grad():
        log_f = brute_force_log_f(model, all_images()).double()
    exact = float(torch.logsumexp(log_f, 0))
    generator = torch.Generator().manual_seed(3)
    result = ais_rbm(model, base_log_probs(), 2000, power_schedule(100, 2.0), generator)
    assert abs(result.log_z - exact) < max(4 * result.log_z_se, 0.02)
    assert result.ess > 500
    # RAISE: exp of the estimates is unbiased for p(v) (up to annealing error), so its mean
    # matches, while the mean of the logs is a lower bound
    picks = torch.tensor([3, 100, 250])
    images = all_images()[picks].repeat_interleave(2000, 0)
    estimates = raise_log_prob(model, base_log_probs(), images, power_schedule(100, 2.0), generator).reshape(3, 2000)
    truth = (log_f[picks] - exact).numpy()
    weights = np.exp(estimates - estimates.max(1, keepdims=True))
    se = weights.std(1) / weights.mean(1) / np.sqrt(weights.shape[1])  # of the log of the mean weight
    assert (np.abs(np.log(np.exp(estimates).mean(1)) - truth) < 4 * se + 0.01).all()
    assert (estimates.mean(1) <= truth + 0.01).all()


@pytest.mark.parametrize("classes", [0, 3])
@pytest.mark.parametrize("sparse_hidden", [0.0, 1.0], ids=["dense", "sparse"])
def test_block_gibbs_samples_the_model(classes, sparse_hidden, monkeypatch):
    monkeypatch.setattr(rbm_module, "SPARSE_HIDDEN", sparse_hidden)  # both products of W h
    model = tiny_rbm(classes, seed=4)
    with torch.no_grad():
        p = torch.softmax(brute_force_log_f(model, all_images()).double(), 0).numpy()
    n = 40_000
    generator = torch.Generator().manual_seed(5)
    labels = torch.zeros(n, dtype=torch.long) if classes else None
    x, _, _ = model.gibbs(torch.zeros(n, SIDE, SIDE, dtype=torch.uint8), labels, 25, generator, clamp_labels=False)
    codes = (x.view(n, -1).long().numpy() * (4 ** np.arange(SIDE * SIDE)[::-1])).sum(1)
    tv = 0.5 * np.abs(np.bincount(codes, minlength=256) / n - p).sum()
    bound = 0.5 * np.sqrt(p * (1 - p) / n).sum() + math.sqrt(math.log(1e6) / (2 * n))
    assert tv < bound


def test_sparse_and_dense_hidden_products_agree():
    torch.manual_seed(0)
    model = CategoricalRBM(RBMConfig(height=7, width=7, levels=4, hidden=50, classes=0, init_std=0.5))
    for share, expect_sparse in ((0.04, True), (0.5, False)):
        h = (torch.rand(30, 50) < share).float()
        h[0] = 0.0  # a chain with no unit on: an empty bag
        assert (h.mean().item() <= rbm_module.SPARSE_HIDDEN) == expect_sparse
        torch.testing.assert_close(model.hidden_product(h), h @ model.weight.t(), rtol=1e-5, atol=1e-5)
    assert model.hidden_product(torch.zeros(3, 50)).abs().max() == 0


def test_clamped_labels_give_the_conditional():
    model = tiny_rbm(3, seed=6)
    images = all_images()
    n = 40_000
    x, labels, _ = model.gibbs(torch.zeros(n, SIDE, SIDE, dtype=torch.uint8), torch.full((n,), 2), 25,
                               torch.Generator().manual_seed(7))
    assert (labels == 2).all()
    with torch.no_grad():
        p = torch.softmax(-model.free_energy(images, torch.full((256,), 2)).double(), 0).numpy()
    codes = (x.view(n, -1).long().numpy() * (4 ** np.arange(SIDE * SIDE)[::-1])).sum(1)
    assert 0.5 * np.abs(np.bincount(codes, minlength=256) / n - p).sum() < 0.5 * np.sqrt(p / n).sum() + 0.02


@pytest.mark.parametrize("classes", [0, 10])
def test_pcd_statistics_are_the_free_energy_gradient(classes):
    torch.manual_seed(0)
    model = CategoricalRBM(RBMConfig(height=4, width=5, levels=4, hidden=7, classes=classes, init_std=0.5))
    with torch.no_grad():
        model.visible_bias.normal_()
        model.label_bias.normal_()
    x, negatives = torch.randint(0, 4, (6, 4, 5)), torch.randint(0, 4, (9, 4, 5))
    y = torch.randint(0, 10, (6,)) if classes else None
    y_neg = torch.randint(0, 10, (9,)) if classes else None
    grads, gap = model.pcd_gradient(x, y, negatives, y_neg)
    free = model.free_energy(torch.cat([x, negatives]), torch.cat([y, y_neg]) if classes else None)
    loss = free[:6].mean() - free[6:].mean()
    loss.backward()
    assert gap == pytest.approx(float(loss.detach()), abs=1e-5)
    for name, parameter in model.named_parameters():
        expected = -parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        torch.testing.assert_close(grads[name], expected, atol=1e-6, rtol=1e-5)


def test_reference_level_sampler_matches_softmax():
    partial = torch.tensor([[2.0, -1.0, 0.5], [100.0, 99.0, -50.0]])  # large logits must not overflow
    n = 200_000
    draws = sample_above_reference(partial.repeat(n, 1, 1).view(n, 2, 3), torch.Generator().manual_seed(0))
    for row in range(2):
        p = torch.softmax(torch.cat([torch.zeros(1), partial[row]]), 0).numpy()
        freq = np.bincount(draws[:, row].numpy(), minlength=4) / n
        np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p * (1 - p) / n).max() + 1e-6)


def test_momentum_schedule_decays_lr_and_switches_momentum():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [parameter], "lr": 0.2}], lr=0.2, momentum=0.5)
    schedule = MomentumSchedule(optimizer, total_steps=10, switch_step=4, start=0.5, final=0.9)
    seen = []
    for _ in range(10):
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        schedule.step()
    assert seen[0] == (0.2, 0.5) and seen[3][1] == 0.5 and seen[4][1] == 0.9
    assert seen[5][0] == pytest.approx(0.1) and optimizer.param_groups[0]["lr"] == 0.0
    resumed = MomentumSchedule(optimizer, total_steps=10, switch_step=4, start=0.5, final=0.9)
    resumed.load_state_dict(schedule.state_dict())
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_mixture_baseline_is_a_normalised_class_mixture():
    images = np.array(list(itertools.product(range(4), repeat=2)), dtype=np.uint8).reshape(-1, 1, 2)
    labels = np.arange(len(images)) % 3
    class_model = IndependentModel.fit(images, labels, classes=3)
    prior = class_prior(np.array([0, 0, 1, 2]))
    assert prior.tolist()[:3] == [0.5, 0.25, 0.25]
    prior = prior[:3] / prior[:3].sum()
    per_class = np.stack([class_model.log_likelihood(images, np.full(16, k)) for k in range(3)], 1)
    assert np.exp(mixture_log_prob(per_class, prior)).sum() == pytest.approx(1.0)


def test_training_moves_towards_the_data_and_resumes(tmp_path):
    """Two tiny PCD epochs on digit-like strokes; a killed job resumes to the same model."""
    rng = np.random.default_rng(0)
    images = np.zeros((200, 6, 6), dtype=np.uint8)
    images[:, 2:4, :] = rng.integers(2, 4, size=(200, 2, 6))  # a bar of high levels
    labels = rng.integers(0, 10, 200)
    data = LevelData(images[:160], labels[:160], images[160:], labels[160:], images[160:], labels[160:])
    independent = IndependentModel.fit(data.train_x)
    cfg = RBMTrainConfig(hidden=8, epochs=2, batch_size=20, lr=0.05, label_lr_factor=10.0, discriminative_weight=1.0,
                         momentum_start=0.5, momentum_final=0.9, momentum_switch_epochs=1, weight_decay=1e-4, chains=20,
                         sweeps=1, fast_lr={"rbm": 0.0, "rbm_cond": 0.05}, fast_decay=0.05, init_std=0.01,
                         val_images=20)
    model, result, history, samples, gaps = train_rbm(cfg, True, data, independent, seed=3,
                                                      checkpoint_path=tmp_path / "ckpt.pt")
    again, result2, _, _, _ = train_rbm(cfg, True, data, independent, seed=3, checkpoint_path=tmp_path / "ckpt.pt")
    assert len(history) == 2 and samples.shape == (2, 16, 6, 6) and len(gaps) == 16
    assert result2.resumed_from_epoch == 2
    for a, b in zip(model.parameters(), again.parameters()):
        torch.testing.assert_close(a, b)
    assert not result.diverged and np.isfinite(history[-1]["val_pll"])


def test_fpcd_chains_run_on_the_fast_weights_which_follow_the_gradient():
    model = tiny_rbm(seed=2)
    regular = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    chains = torch.zeros(64, SIDE, SIDE, dtype=torch.uint8)
    trainer = RBMPCDTrainer(model, chains, torch.zeros(64), 1, generator, fast_lr=0.5, fast_decay=0.1)
    with torch.no_grad():  # fast weights that force level 3 at every site
        trainer.fast_visible_bias.view(-1, 3)[:, 2] = 100.0
    fast_before = {name: getattr(trainer, f"fast_{name}").clone() for name in regular}
    x = torch.randint(0, 4, (8, SIDE, SIDE), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    trainer.loss((x, torch.zeros(8, dtype=torch.long)))
    assert (trainer.chains == 3).all()  # the chains saw regular + fast parameters
    for name, p in model.named_parameters():  # ... and the model's own parameters are untouched
        assert torch.equal(p.detach(), regular[name])
    grads, _ = model.pcd_gradient(x, None, trainer.chains, None)
    for name in regular:
        torch.testing.assert_close(getattr(trainer, f"fast_{name}"), 0.9 * fast_before[name] + 0.5 * grads[name])
    plain = RBMPCDTrainer(model, chains, torch.zeros(64), 1, generator)
    assert plain.fast_weight.numel() == 0  # plain PCD keeps no fast weights


def test_discriminative_term_is_the_gradient_of_log_p_y_given_v():
    torch.manual_seed(1)
    model = CategoricalRBM(RBMConfig(height=3, width=4, levels=4, hidden=5, classes=10, init_std=0.5))
    with torch.no_grad():
        model.label_bias.normal_()
    x, negatives = torch.randint(0, 4, (6, 3, 4)), torch.randint(0, 4, (4, 3, 4))
    y, y_neg = torch.randint(0, 10, (6,)), torch.randint(0, 10, (4,))
    plain, _ = model.pcd_gradient(x, y, negatives, y_neg)
    plain = {k: v.clone() for k, v in plain.items()}
    hybrid, _ = model.pcd_gradient(x, y, negatives, y_neg, discriminative_weight=0.7)
    log_posterior = torch.log_softmax(model.label_scores(x), dim=1)[torch.arange(6), y].mean()
    log_posterior.backward()
    for name, parameter in model.named_parameters():
        expected = 0.7 * (parameter.grad if parameter.grad is not None else torch.zeros_like(parameter))
        torch.testing.assert_close(hybrid[name] - plain[name], expected, atol=1e-5, rtol=1e-4)


def test_parameter_count_has_a_label_layer_only_when_conditional():
    plain, labelled = tiny_rbm(0), tiny_rbm(3)
    visible = SIDE * SIDE * 3  # level 0 is every site's reference: no weights or bias of its own
    assert plain.parameter_count() == visible * HIDDEN + visible + HIDDEN
    assert labelled.parameter_count() == plain.parameter_count() + 3 * HIDDEN + 3
