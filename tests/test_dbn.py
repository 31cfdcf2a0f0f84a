"""The label-conditional DBN (rgbench.models.dbn) on tiny synthetic data: sampling
contract, determinism, label clamping, exact small-case conditionals, save/load, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from helpers import dbn_config

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
                    label_lr_factor=1.0, discriminative_weight=1.0, init_std=0.1)
    settings.update(overrides)
    return dbn_config(**settings)


@pytest.fixture(scope="module")
def tiny_dbn(tiny_data: LevelData) -> DBN:
    return train_dbn(tiny_config(), tiny_data, seed=0)


def test_samples_are_level_images(tiny_dbn: DBN) -> None:
    for labels in (None, np.arange(7) % 10):
        images = tiny_dbn.sample(7, labels, 3, generator=torch.Generator().manual_seed(0))
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


def test_fpcd_changes_the_upper_layers_only(tiny_data: LevelData, tiny_dbn: DBN) -> None:
    fast = train_dbn(tiny_config(fast_lr=0.1, fast_decay=0.05), tiny_data, seed=0)
    for name, value in tiny_dbn.bottom.state_dict().items():  # layer 1 is plain PCD either way
        assert torch.equal(value, fast.bottom.state_dict()[name]), name
    assert not torch.equal(fast.top.weight, tiny_dbn.top.weight)  # its chains ran on other weights
    again = train_dbn(tiny_config(fast_lr=0.1, fast_decay=0.05), tiny_data, seed=0)
    assert torch.equal(again.top.weight, fast.top.weight)


def test_fast_weights_are_added_for_the_block_and_follow_the_ascent() -> None:
    from rgbench.models.pcd import fast_weights_added, update_fast_weights

    rbm = BernoulliRBM(3, 2, classes=2, init_std=0.1)
    regular = {name: p.detach().clone() for name, p in rbm.named_parameters()}
    fast = {"weight": torch.full((3, 2), 0.25), "hidden_bias": torch.tensor([1.0, -1.0])}
    with fast_weights_added(rbm, fast):
        torch.testing.assert_close(rbm.weight, regular["weight"] + 0.25)
        torch.testing.assert_close(rbm.hidden_bias, regular["hidden_bias"] + torch.tensor([1.0, -1.0]))
        assert torch.equal(rbm.visible_bias, regular["visible_bias"])
    for name, p in rbm.named_parameters():  # restored exactly, not by subtraction
        assert torch.equal(p, regular[name]), name
    ascent = {"weight": torch.ones(3, 2), "hidden_bias": torch.tensor([2.0, 0.0])}
    update_fast_weights(fast, ascent, lr=0.5, decay=0.2)
    torch.testing.assert_close(fast["weight"], torch.full((3, 2), 0.8 * 0.25 + 0.5))
    torch.testing.assert_close(fast["hidden_bias"], torch.tensor([0.8 + 1.0, -0.8]))


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


def test_label_partitions_match_enumeration() -> None:
    """AIS of the per-label partition functions against the exact sums of a 4-visible /
    3-hidden / 3-label RBM, from two different bases; the equilibrium prior is their softmax."""
    from rgbench.models.dbn import equilibrium_label_prior, label_log_partitions
    from rgbench.models.rbm import power_schedule

    torch.manual_seed(0)
    rbm = BernoulliRBM(visible=4, hidden=3, classes=3, init_std=1.0)
    with torch.no_grad():
        for p in (rbm.visible_bias, rbm.hidden_bias, rbm.label_bias):
            p.normal_()
        states = torch.tensor(list(itertools.product((0, 1), repeat=4)), dtype=torch.float32)
        exact = np.array([torch.logsumexp(-rbm.free_energy(states, torch.full((16,), y)), 0).item()
                          for y in range(3)])
    for base in (torch.full((3, 4), 0.5), torch.tensor([[0.1, 0.9, 0.5, 0.3]] * 3)):
        got = [r.log_z for r in label_log_partitions(rbm, base, 2000, power_schedule(50, 1.0),
                                                     torch.Generator().manual_seed(1))]
        np.testing.assert_allclose(got, exact, atol=0.02)
    prior = equilibrium_label_prior(rbm, torch.full((3, 4), 0.5), 2000, 50, 1.0, torch.Generator().manual_seed(2))
    np.testing.assert_allclose(prior["class_prior"], np.exp(exact - np.logaddexp.reduce(exact)), atol=0.01)
    assert prior["doubling_shift"] < 0.05 and prior["ess"] > 1000
    with pytest.raises(ValueError, match="label units"):
        label_log_partitions(BernoulliRBM(4, 3), torch.full((1, 4), 0.5), 10, power_schedule(5, 1.0))
    with pytest.raises(ValueError, match="base_probs"):
        label_log_partitions(rbm, torch.full((2, 4), 0.5), 10, power_schedule(5, 1.0))


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
        dbn_config(hidden=[16], epochs=[1])
    with pytest.raises(ValueError, match="hidden unit"):
        dbn_config(hidden=[16, 0], epochs=[1, 1])
    with pytest.raises(ValueError, match="epochs"):
        dbn_config(hidden=[16, 8], epochs=[1])
    with pytest.raises(ValueError, match="features"):
        dbn_config(hidden=[16, 8], epochs=[1, 1], features="means")
    with pytest.raises(ValueError, match="fast_decay"):
        dbn_config(fast_lr=0.1, fast_decay=1.5)
    with pytest.raises(ValueError, match="fast_lr"):
        dbn_config(fast_lr=-0.1)
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


# --- the potts_ebm jobs of the DBN (rgbench.experiments.potts_ebm_dbn) -------------------------


def test_dbn_jobs_train_once_and_score_both_rows(tmp_path) -> None:
    """dbn_cond's train job makes the model both DBN rows sample: dbn_cond with each chain's
    label clamped to 0..9 in turn (conditional recognition), dbn with the labels free;
    both are scored at the budget and at long_sweeps_factor times it, with no likelihood
    claimed, and the evaluation is reproducible."""
    import json

    from helpers import default_config, level_files

    from rgbench.experiments import potts_ebm
    from rgbench.io import load_npz

    mnist4, reference, stats = level_files(tmp_path)
    section = default_config()["potts_ebm"]
    dbn = {**section["dbn"], "hidden": [12, 8], "epochs": [1, 2], "batch_size": 20, "chains": 10, "prior_chains": 6,
           "prior_steps": 20}
    run = {"model": "dbn_cond", "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0, "training": dbn}
    trained = tmp_path / "model-dbn_cond_seed-0"
    payload = potts_ebm.train_job(run, str(mnist4), str(trained / "model.pt"), str(trained / "epochs.npz"),
                                  device="cpu")
    assert payload["kind"] == "dbn" and payload["n_train"] == 100 and payload["n_val"] == 20
    assert [h["layer"] for h in payload["history"]] == [0, 1, 1]
    assert payload["steps_run"] == 3 * (100 // 20)
    assert load_npz(trained / "epochs.npz")["layer"].tolist() == [0, 1, 1]

    analysis = {"seed": 0, "samples": 30, "dbn_sample_sweeps": 4, "long_sweeps_factor": 3,
                "checkpoints": [1, 2, 5, 10], "ceiling_images": 40, "memorisation_images": 20}
    rows = {}
    for model in ("dbn_cond", "dbn", "dbn_cond"):
        out = tmp_path / f"{model}-{len(rows)}"
        potts_ebm.evaluate_job({**run, "model": model}, analysis, str(mnist4), str(trained / "model.pt"),
                               str(reference), str(stats), str(out / "metrics.json"), str(out / "samples.npz"),
                               run_id=f"model-{model}_seed-0", device="cpu")
        rows[f"{model}-{len(rows)}"] = (json.loads((out / "metrics.json").read_text()), load_npz(out / "samples.npz"))
    (cond, cond_samples), (free, free_samples), (again, again_samples) = rows.values()
    for record, samples in ((cond, cond_samples), (free, free_samples)):
        m = record["metrics"]
        assert m["test_nll_nats"] is None and m["likelihood_method"] == "none"
        assert m["sample_sweeps"] == 4 and m["long_sample_sweeps"] == 12 and m["n_samples"] == 30
        assert 0 <= m["long_recognisable_fraction"] <= 1 and 0 <= m["test_label_accuracy"] <= 1
        assert m["cpu_seconds_per_1000_samples"] > 0 and m["train_cpu_seconds"] == payload["train_cpu_seconds"]
        assert samples["checkpoints"].tolist() == [1, 2, 4, 12]  # up to the budget, then the long run's end
        assert samples["samples"].shape == (30, 28, 28) and samples["samples"].max() <= 3
        assert record["provenance"]["n_params"] == 784 * 3 * 12 + 784 * 3 + 12 + 12 * 8 + 12 + 8 + 10 * 8 + 10
    assert cond_samples["labels"].tolist() == [i % 10 for i in range(30)] and len(free_samples["labels"]) == 0
    assert "conditional_recognition" in cond["metrics"] and "long_conditional_recognition" in cond["metrics"]
    assert "conditional_recognition" not in free["metrics"]
    # the label-free row carries the equilibrium class prior of the train job's AIS; the clamped one does not
    prior = payload["record"]["equilibrium_label_prior"]
    assert len(prior["class_prior"]) == 10 and sum(prior["class_prior"]) == pytest.approx(1.0)
    assert free["metrics"]["equilibrium_max_class_prior"] == pytest.approx(max(prior["class_prior"]))
    assert free["metrics"]["equilibrium_min_class_prior"] == pytest.approx(min(prior["class_prior"]))
    assert free["metrics"]["equilibrium_prior_doubling_shift"] >= 0
    assert "equilibrium_max_class_prior" not in cond["metrics"]
    assert cond["metrics"]["baseline"] == "class_mixture" and free["metrics"]["baseline"] == "independent"
    assert cond["params"]["hidden"] == "12-8" and cond["params"]["epochs"] == "1-2"
    # the same seed draws the same samples
    np.testing.assert_array_equal(cond_samples["samples"], again_samples["samples"])


def test_dbn_has_no_probe_yet(tmp_path) -> None:
    """The paper preset's probe cannot cut the DBN's training: the job says so instead of
    training the whole model under a probe's name."""
    from helpers import default_config, level_files
    from test_probe import probe_block

    from rgbench.experiments import potts_ebm

    mnist4, _, _ = level_files(tmp_path)
    dbn = default_config()["potts_ebm"]["dbn"]
    run = {"model": "dbn_cond", "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0, "training": dbn}
    with pytest.raises(ValueError, match="no probe"):
        potts_ebm.train_job({**run, **probe_block("potts_ebm_train", "cpu")}, str(mnist4), str(tmp_path / "m.pt"),
                            str(tmp_path / "e.npz"), device="cpu")


def test_training_resumes_after_the_last_finished_layer(tiny_data: LevelData, tmp_path, monkeypatch) -> None:
    """A run killed while training the top RBM resumes after layer 1 from its checkpoint and
    ends with the weights of an uninterrupted run; the checkpoint is removed at the end."""
    import rgbench.models.dbn as dbn_module

    cfg = tiny_config(hidden=[24, 16, 12], epochs=[1, 1, 2])
    whole = train_dbn(cfg, tiny_data, seed=4)
    checkpoint = tmp_path / "checkpoint.pt"
    original = dbn_module._train_upper

    def killed_at_the_top(layer, depth, *args, **kwargs):
        if depth == 2:
            raise KeyboardInterrupt
        return original(layer, depth, *args, **kwargs)

    monkeypatch.setattr(dbn_module, "_train_upper", killed_at_the_top)
    with pytest.raises(KeyboardInterrupt):
        train_dbn(cfg, tiny_data, seed=4, checkpoint_path=checkpoint)
    assert torch.load(checkpoint, weights_only=False)["layers_done"] == 2
    monkeypatch.setattr(dbn_module, "_train_upper", original)
    messages = []
    resumed = train_dbn(cfg, tiny_data, seed=4, log=messages.append, checkpoint_path=checkpoint)
    assert messages[0].startswith("resumed after layer 1")
    assert not any(m.startswith("layer 0") or m.startswith("layer 1 ") for m in messages[1:])
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert [h["layer"] for h in resumed.record["history"]] == [0, 1, 2, 2]
    assert not checkpoint.exists()
    # another seed's run does not take this run's checkpoint
    monkeypatch.setattr(dbn_module, "_train_upper", killed_at_the_top)
    with pytest.raises(KeyboardInterrupt):
        train_dbn(cfg, tiny_data, seed=4, checkpoint_path=checkpoint)
    monkeypatch.setattr(dbn_module, "_train_upper", original)
    other = []
    train_dbn(cfg, tiny_data, seed=5, log=other.append, checkpoint_path=checkpoint)
    assert other[0].startswith("layer 0") and not any(m.startswith("resumed") for m in other)
