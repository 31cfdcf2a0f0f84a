"""The traditional generative models (MADE, categorical VAE) and the generative jobs, on tiny
images and tiny synthetic 4-level data (no MNIST, no ../shared)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rgbench.models.made import MADE, LevelLinear, MADEConfig, level_bags
from rgbench.models.vae import VAE, VAEConfig
from helpers import level_files

ALL_2x2 = torch.tensor(list(itertools.product(range(4), repeat=4))).view(256, 2, 2)  # every 2x2 4-level image


def randomised(model: torch.nn.Module, scale: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """The model with every parameter drawn from N(0, scale^2): a far-from-uniform
    distribution whose masks and embeddings all matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return model


def frequencies(samples: torch.Tensor) -> torch.Tensor:
    """Empirical distribution over the 256 images of 2x2 samples (index as in ALL_2x2)."""
    index = (samples.view(len(samples), 4).long() * torch.tensor([64, 16, 4, 1])).sum(1)
    return torch.bincount(index, minlength=256).double() / len(samples)


# ----------------------------------------------------------------------------- MADE

@pytest.mark.parametrize("hidden", [(), (12,), (20, 15)])
@pytest.mark.parametrize("classes", [0, 3])
def test_made_logits_of_a_pixel_depend_only_on_earlier_pixels(hidden, classes):
    height, width = 3, 4
    model = randomised(MADE(MADEConfig(height=height, width=width, hidden=hidden, classes=classes)))
    d = height * width
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, 4, (16, d), generator=generator)
    labels = torch.arange(16) % classes if classes else None
    base = model.logits(x, labels)
    changed_later = False
    for pixel in range(d):
        other = x.clone()
        other[:, pixel] = (other[:, pixel] + 1 + torch.randint(0, 3, (16,), generator=generator)) % 4
        diff = (model.logits(other, labels) - base).abs().amax(dim=(0, 2))
        assert torch.all(diff[:pixel + 1] == 0), f"pixel {pixel} reaches the logits of pixels <= itself"
        changed_later |= bool((diff[pixel + 1:] > 0).any())
    assert changed_later  # and later pixels do see earlier ones
    # the same property read off the masks: a path from input pixel j to output pixel i exists only for j < i
    path = model.output.mask
    for layer in reversed(model.hidden_layers):
        path = (path @ layer.mask).clamp(max=1)
    out_pixel = torch.arange(d).repeat_interleave(4)[:, None]
    in_pixel = torch.arange(d).repeat_interleave(3)[None, :]
    assert torch.all(path[out_pixel <= in_pixel] == 0)


def test_made_conditional_logits_depend_on_the_label():
    model = randomised(MADE(MADEConfig(height=2, width=3, hidden=(8,), classes=4)))
    x = torch.zeros(4, 6, dtype=torch.long)
    logits = model.logits(x, torch.arange(4))
    assert not torch.allclose(logits[0], logits[1])  # the first pixel's logits too: a label is known up front
    assert not torch.allclose(logits[0, 0], logits[1, 0])


@pytest.mark.parametrize("hidden", [(), (7,), (9, 5)])
@pytest.mark.parametrize("classes", [0, 3])
def test_made_exact_likelihood_is_normalised(hidden, classes):
    model = randomised(MADE(MADEConfig(height=2, width=2, hidden=hidden, classes=classes))).double()
    for label in range(max(classes, 1)):
        labels = torch.full((256,), label) if classes else None
        with torch.no_grad():
            total = model.log_prob(ALL_2x2, labels).exp().sum()
        assert float(total) == pytest.approx(1.0, abs=1e-5)
        assert torch.allclose(model.nll(ALL_2x2, labels), -model.log_prob(ALL_2x2, labels))


@pytest.mark.parametrize("hidden,classes", [((), 0), ((9, 5), 0), ((7,), 3)])
def test_made_sampler_draws_from_its_exact_likelihood(hidden, classes):
    """The incremental pixel-by-pixel sampler and the one-pass likelihood are one model:
    the samples' frequencies over all 256 images match exp(log p)."""
    model = randomised(MADE(MADEConfig(height=2, width=2, hidden=hidden, classes=classes)), seed=2)
    n = 60_000
    labels = torch.full((n,), 2) if classes else None
    samples = model.sample(n, labels, generator=torch.Generator().manual_seed(0))
    exact = model.log_prob(ALL_2x2, labels[:256] if classes else None).exp().double().detach()
    total_variation = float((frequencies(samples) - exact).abs().sum() / 2)
    assert total_variation < 0.02  # ~0.008 expected from 60,000 draws; a wrong mask or order gives > 0.1


def test_made_parameter_counts():
    model = MADE(MADEConfig(hidden=(500,)))
    assert model.parameter_count() == 2352 * 500 + 500 + 500 * 3136 + 3136
    assert model.active_parameter_count() < model.parameter_count() * 0.55  # masks drop about half the weights
    conditional = MADE(MADEConfig(hidden=(500,), classes=10))
    assert conditional.parameter_count() == model.parameter_count() + 10 * (500 + 3136)


# ----------------------------------------------------------------------------- VAE

def exact_log_prob_1d(model: VAE, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) of a VAE with one latent, by quadrature of p(x | z) N(z; 0, 1) on a fine grid."""
    z = torch.linspace(-9.0, 9.0, 6001, dtype=torch.float64)[:, None]
    dz = float(z[1] - z[0])
    with torch.no_grad():
        logits = model.decoder_logits(z[:, None, :].expand(-1, len(x), -1), labels)  # (grid, N, D, L)
        log_px_z = torch.distributions.Categorical(logits=logits).log_prob(x.view(len(x), -1)).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z)
        return torch.logsumexp(log_px_z + log_prior, dim=0) + math.log(dz)


@pytest.mark.parametrize("classes", [0, 3])
def test_vae_iwae_bound_is_an_upper_bound_that_tightens_with_k(classes):
    torch.manual_seed(0)
    model = randomised(VAE(VAEConfig(height=2, width=2, hidden=6, latents=1, classes=classes)), scale=0.7).double()
    labels = torch.full((256,), 1) if classes else None
    exact_nll = -exact_log_prob_1d(model, ALL_2x2, labels)
    assert float((-exact_nll).exp().sum()) == pytest.approx(1.0, abs=1e-6)  # the quadrature is a distribution
    generator = torch.Generator().manual_seed(3)
    bounds = {k: model.iwae_bound(ALL_2x2, labels, samples=k, generator=generator, chunk=7).mean()
              for k in (1, 10, 100, 2000)}
    gaps = {k: float(bound - exact_nll.mean()) for k, bound in bounds.items()}
    assert gaps[1] > gaps[10] > gaps[100] > -0.01  # decreases with K, never (beyond noise) below the truth
    assert gaps[2000] == pytest.approx(0.0, abs=0.02)
    # the training loss is the K = 1 bound with the KL in closed form: the same mean (over many draws:
    # a random encoder makes the sampled K = 1 bound noisy)
    many = ALL_2x2.repeat(40, 1, 1)
    many_labels = labels.repeat(40) if classes else None
    with torch.no_grad():
        elbo = float(model.negative_elbo(many, many_labels).mean())
    assert elbo == pytest.approx(float(model.iwae_bound(many, many_labels, samples=1, generator=generator).mean()),
                                 rel=0.05)


def test_vae_sampler_draws_from_its_likelihood():
    model = randomised(VAE(VAEConfig(height=2, width=2, hidden=6, latents=1)), scale=0.7).double()
    samples = model.sample(60_000, generator=torch.Generator().manual_seed(0))
    exact = exact_log_prob_1d(model, ALL_2x2).exp()
    assert float((frequencies(samples) - exact).abs().sum() / 2) < 0.02


# ----------------------------------------------------------------------------- both models

def small(kind: str, classes: int = 0) -> MADE | VAE:
    if kind == "made":
        return MADE(MADEConfig(height=5, width=6, hidden=(16, 16), classes=classes))
    return VAE(VAEConfig(height=5, width=6, hidden=16, latents=3, classes=classes))


@pytest.mark.parametrize("kind", ["made", "vae"])
@pytest.mark.parametrize("classes", [0, 10])
def test_samples_are_level_images_and_reproducible(kind, classes):
    model = randomised(small(kind, classes))
    labels = torch.arange(7) % 10 if classes else None
    draw = lambda seed: model.sample(7, labels, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    first = draw(0)
    assert first.shape == (7, 5, 6) and first.dtype == torch.uint8
    assert int(first.min()) >= 0 and int(first.max()) <= 3
    assert torch.equal(first, draw(0)) and not torch.equal(first, draw(1))
    assert model.sample(0, labels[:0] if classes else None).shape == (0, 5, 6)


@pytest.mark.parametrize("kind", ["made", "vae"])
def test_bad_inputs_are_refused_with_a_clear_message(kind):
    model = small(kind)
    nll = model.nll if kind == "made" else model.negative_elbo
    good = torch.zeros(2, 5, 6, dtype=torch.uint8)
    assert nll(good).shape == (2,) and nll(good.view(2, 30)).shape == (2,)
    with pytest.raises(ValueError, match="levels must lie in 0..3"):
        nll(good + 4)
    with pytest.raises(ValueError, match="levels must lie in 0..3"):
        nll(good.long() - 1)
    with pytest.raises(TypeError, match="integer levels"):
        nll(good.float())
    with pytest.raises(ValueError, match=r"shape \(N, 5, 6\)"):
        nll(torch.zeros(2, 6, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        nll(good, torch.zeros(2, dtype=torch.long))
    conditional = small(kind, classes=10)
    cond_nll = conditional.nll if kind == "made" else conditional.negative_elbo
    with pytest.raises(ValueError, match="needs labels"):
        cond_nll(good)
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        cond_nll(good, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="2 integer labels"):
        conditional.sample(2, torch.tensor([0]))
    with pytest.raises(ValueError):
        MADEConfig(hidden=(0,))
    with pytest.raises(ValueError):
        VAEConfig(latents=0)


# ----------------------------------------------------------------------------- the input layer

def level_images(n: int = 9, seed: int = 0) -> torch.Tensor:
    """(n, 5, 6) level images, mostly level 0 as MNIST's, with an all-zero image (an empty
    bag) first and last, one of every pixel at level 3, and one with every level."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 4, (n, 5, 6), generator=generator)
    x = x * (torch.rand(n, 5, 6, generator=generator) < 0.3)
    x[0] = 0
    x[-1] = 0
    x[1] = 3
    x[2] = torch.arange(30).view(5, 6) % 4
    return x


def dense_level_linear(self: LevelLinear, x: torch.Tensor) -> torch.Tensor:
    """What LevelLinear computes, as the dense product of the indicators (the models' input
    layer before the gather)."""
    inputs = F.one_hot(x, self.levels)[..., 1:].flatten(1).to(self.weight.dtype)
    return F.linear(inputs, self.masked_weight(), self.bias)


def test_level_bags_hold_the_indicators_that_are_one():
    x = level_images().view(9, 30)
    indices, offsets = level_bags(x, 4)
    dense = F.one_hot(x, 4)[..., 1:].flatten(1)
    for n in range(len(x)):
        end = offsets[n + 1] if n + 1 < len(x) else len(indices)
        assert indices[offsets[n]:end].tolist() == torch.nonzero(dense[n]).flatten().tolist()
    assert offsets[0] == 0 and offsets[1] == 0 and offsets[-1] == len(indices)  # the two empty bags
    assert [len(t) for t in level_bags(x[:0], 4)] == [0, 0]


@pytest.mark.parametrize("kind,hidden,classes", [("made", (16, 16), 0), ("made", (16, 16), 10), ("made", (), 0),
                                                 ("made", (12,), 3), ("vae", 16, 0), ("vae", 16, 10)])
def test_the_input_layer_gather_equals_the_dense_indicator_product(kind, hidden, classes, monkeypatch):
    """Outputs, losses and every parameter's gradient of the gather-and-sum input layer equal
    the dense product of the one-hot indicators (to float32 rounding); masked weights of the
    MADE's first layer get exactly zero gradient."""
    if kind == "made":
        model = MADE(MADEConfig(height=5, width=6, hidden=hidden, classes=classes))
    else:
        model = VAE(VAEConfig(height=5, width=6, hidden=hidden, latents=3, classes=classes))
    model = randomised(model, scale=0.5)
    x = level_images()
    labels = torch.arange(len(x)) % classes if classes else None

    def run() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)  # the VAE's reparameterised draw
        if kind == "made":
            outputs = {"logits": model.logits(x, labels), "log_prob": model.log_prob(x, labels)}
            loss = model.nll(x, labels).mean()
        else:
            q = model.posterior(*model._check(x, labels))
            outputs = {"mean": q.loc, "scale": q.scale, "negative_elbo": model.negative_elbo(x, labels)}
            loss = outputs["negative_elbo"].mean()
            with torch.no_grad():
                outputs["iwae"] = model.iwae_bound(x, labels, samples=3, generator=torch.Generator().manual_seed(1))
        loss.backward()
        return ({k: v.detach() for k, v in outputs.items()},
                {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})

    outputs, grads = run()
    with monkeypatch.context() as patch:
        patch.setattr(LevelLinear, "forward", dense_level_linear)
        dense_outputs, dense_grads = run()
    for key, value in dense_outputs.items():
        torch.testing.assert_close(outputs[key], value, atol=1e-5, rtol=1e-5, msg=key)
    assert grads.keys() == dense_grads.keys() == {name for name, _ in model.named_parameters()}
    for name, value in dense_grads.items():
        torch.testing.assert_close(grads[name], value, atol=1e-5, rtol=1e-5, msg=name)
    first = model.encoder_hidden if kind == "vae" else (model.hidden_layers[0] if hidden else model.output)
    assert isinstance(first, LevelLinear) and float(first.weight.grad.abs().sum()) > 0
    if kind == "made":
        assert torch.all(first.weight.grad[first.mask == 0] == 0)


@pytest.mark.parametrize("kind", ["made", "vae"])
def test_the_input_layer_keeps_linear_parameters_and_initialisation(kind):
    """Same parameter names, shapes and initial values as the nn.Linear layers the models
    were built of (the input layer only stores its weight column-major), and a state dict in
    the usual (row-major) order loads and gives the same numbers."""
    torch.manual_seed(0)
    model = small(kind)
    torch.manual_seed(0)
    if kind == "made":
        linears = {"hidden_layers.0": torch.nn.Linear(90, 16), "hidden_layers.1": torch.nn.Linear(16, 16),
                   "output": torch.nn.Linear(16, 120)}
        first = model.hidden_layers[0]
    else:
        linears = {"encoder_hidden": torch.nn.Linear(90, 16), "encoder_out": torch.nn.Linear(16, 6),
                   "decoder_hidden": torch.nn.Linear(3, 16), "decoder_out": torch.nn.Linear(16, 120)}
        first = model.encoder_hidden
    state = model.state_dict()
    masks = {f"{name}.mask" for name in linears} if kind == "made" else set()
    assert set(state) == {f"{name}.{p}" for name in linears for p in ("weight", "bias")} | masks
    for name, linear in linears.items():
        assert torch.equal(state[f"{name}.weight"], linear.weight) and torch.equal(state[f"{name}.bias"], linear.bias)
    assert first.weight.shape == (16, 90) and first.weight.t().is_contiguous()

    other = randomised(small(kind), seed=4)
    model.load_state_dict({k: v.contiguous() for k, v in other.state_dict().items()})
    assert first.weight.t().is_contiguous()  # loading copies values into the column-major weight
    x = level_images()
    if kind == "made":
        assert torch.equal(model.logits(x), other.logits(x))
    else:
        assert torch.equal(model.posterior(*model._check(x, None)).loc, other.posterior(*other._check(x, None)).loc)
    assert model.double().state_dict()[next(iter(linears)) + ".weight"].t().is_contiguous()


def test_an_empty_batch_goes_through_the_input_layer():
    none = torch.zeros(0, 5, 6, dtype=torch.long)
    assert small("made").logits(none).shape == (0, 30, 4)
    assert small("vae").negative_elbo(none).shape == (0,)


@pytest.mark.parametrize("leading", [(), (3,)])
def test_categorical_log_prob_equals_torch_categorical_bit_for_bit(leading):
    """Forward values and gradients: the training trajectories stay those of Categorical."""
    from torch.distributions import Categorical
    from rgbench.models.made import categorical_log_prob
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(*leading, 17, 30, 4, generator=generator) * 4).requires_grad_()
    values = torch.randint(0, 4, (17, 30), generator=generator)
    weights = torch.randn(*leading, 17, generator=generator)
    ours = categorical_log_prob(logits, values)
    theirs = Categorical(logits=logits, validate_args=False).log_prob(values)
    assert ours.shape == (*leading, 17, 30)
    assert torch.equal(ours, theirs)
    ours_grad, = torch.autograd.grad((ours.sum(-1) * weights).sum(), logits)
    theirs_grad, = torch.autograd.grad((theirs.sum(-1) * weights).sum(), logits)
    assert torch.equal(ours_grad, theirs_grad)
    # exact value on a tiny case: uniform logits give log(1/4) at every pixel
    assert torch.allclose(categorical_log_prob(torch.zeros(2, 4), torch.tensor([0, 3])),
                          torch.full((2,), -math.log(4)))


# ----------------------------------------------------------------------------- memorisation

def test_nearest_training_distances_match_brute_force():
    from rgbench.evaluation.memorisation import memorisation, nearest_training_distances

    rng = np.random.default_rng(0)
    train = rng.integers(0, 4, (57, 4, 5)).astype(np.uint8)
    images = rng.integers(0, 4, (9, 4, 5)).astype(np.uint8)
    images[3] = train[40]  # an exact copy
    l2, hamming = nearest_training_distances(images, train, chunk=10)  # chunks smaller than the set
    dist = np.sqrt(((images[:, None].astype(float) - train[None].astype(float)) ** 2).sum(axis=(2, 3)))
    np.testing.assert_allclose(l2, dist.min(1), rtol=1e-6)
    nearest = train[dist.argmin(1)]
    np.testing.assert_array_equal(hamming, (nearest != images).reshape(9, -1).sum(1))
    assert l2[3] == 0 and hamming[3] == 0
    copies = memorisation(train[:9], images, train)  # samples that are training images
    assert copies["exact_copy_fraction"] == 1.0 and copies["memorisation_l2_ratio"] == 0.0
    fresh = memorisation(images, images, train)
    assert fresh["memorisation_l2_ratio"] == 1.0 and fresh["memorisation_images"] == 9


# ----------------------------------------------------------------------------- the jobs


TRAINING = {"made": {"hidden": [24], "epochs": 3, "batch_size": 20, "lr": 0.01, "lr_schedule": "cosine",
                     "val_images": 0},
            "vae": {"hidden": 24, "latents": 4, "epochs": 3, "batch_size": 20, "lr": 0.01, "lr_schedule": "cosine",
                    "val_images": 0, "val_iwae_samples": 3}}
EVALUATION = {"samples": 20, "sample_batch": 8, "iwae_samples": 5, "iwae_images": 0, "nll_batch": 16,
              "ceiling_images": 20, "memorisation_images": 10}


def hand_off(model: str, seed: int = 0) -> dict:
    return {"model": model, "seed": seed, "train_limit": 0, "test_limit": 0,
            "training": TRAINING[model.removesuffix("_cond")]}


@pytest.mark.parametrize("model", ["made", "made_cond", "vae", "vae_cond"])
def test_train_and_evaluate_jobs_write_the_comparison_fields(tmp_path, model):
    from rgbench.experiments.generative import evaluate_job, train_job
    from rgbench.io import load_npz

    mnist4, reference, stats = level_files(tmp_path)
    run_dir = tmp_path / model
    payload = train_job(hand_off(model), str(mnist4), str(run_dir / "model.pt"), device="cpu")
    vals = [h["val_nll_nats"] for h in payload["history"]]
    assert len(vals) == 3 and payload["best_epoch"] == 1 + int(np.argmin(vals))
    assert payload["n_train"] == 100 and payload["n_val"] == 20 and payload["steps_run"] == 3 * 5
    assert payload["train_cpu_seconds"] > 0
    metrics = evaluate_job(hand_off(model), EVALUATION, str(mnist4), str(run_dir / "model.pt"), str(reference),
                           str(stats), str(run_dir / "metrics.json"), str(run_dir / "samples.npz"),
                           run_id=f"model-{model}_seed-0", device="cpu")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["experiment"] == "generative" and record["metrics"] == metrics
    assert record["params"]["family"] == "traditional" and record["params"]["model"] == model
    assert record["provenance"]["n_train"] == 100 and record["provenance"]["epochs_run"] == 3
    made = model.startswith("made")
    assert metrics["nll_kind"] == ("exact" if made else "bound")
    assert metrics["nll_method"] == ("exact" if made else "iwae_k5")
    assert metrics["test_nll_images"] == 40 and metrics["val_nll_images"] == 20
    # the validation NLL the job reports is the best epoch's (exact for the MADE: the same number)
    if made:
        assert metrics["val_nll_nats"] == pytest.approx(min(vals), rel=1e-5)
    else:
        assert metrics["test_elbo_nats"] >= metrics["test_nll_nats"] - 1.0
    for key in ("test_nll_nats", "test_nll_se", "val_nll_nats", "fid", "recognisable_fraction", "min_class_share",
                "class_entropy", "ceiling_recognisable_fraction", "cpu_seconds_per_1000_samples",
                "wall_seconds_per_1000_samples", "train_cpu_seconds", "nearest_train_l2_samples",
                "nearest_train_l2_test", "nearest_train_hamming_samples", "nearest_train_hamming_test",
                "memorisation_l2_ratio", "memorisation_hamming_ratio", "exact_copy_fraction"):
        assert key in metrics, key
    assert metrics["n_samples"] == 20 and metrics["sample_batch"] == 8 and metrics["memorisation_images"] == 10
    assert ("conditional_recognition" in metrics) == model.endswith("_cond")
    if model in ("made", "vae"):  # the bound's images are capped, an exact NLL reads every test image
        again = evaluate_job(hand_off(model), {**EVALUATION, "iwae_images": 10}, str(mnist4), str(run_dir / "model.pt"),
                             str(reference), str(stats), str(tmp_path / "again.json"), str(tmp_path / "again.npz"),
                             run_id="again", device="cpu")
        assert again["test_nll_images"] == (40 if made else 10) and again["val_nll_images"] == (20 if made else 10)
    saved = load_npz(run_dir / "samples.npz")
    assert saved["samples"].shape == (20, 28, 28) and saved["samples"].dtype == np.uint8
    assert saved["samples"].max() <= 3
    assert saved["labels"].tolist() == (list(np.arange(20) % 10) if model.endswith("_cond") else [])


def test_training_is_reproducible_and_resumes_exactly(tmp_path, monkeypatch):
    """Same seed, same weights; a job killed in its second epoch resumes from the checkpoint
    and ends with the weights (and best epoch) of an uninterrupted run."""
    from rgbench.experiments.generative import load_trained, train_job

    mnist4, _, _ = level_files(tmp_path)

    def weights(path: Path) -> dict:
        return load_trained(path)[0].state_dict()

    for model in ("made_cond", "vae"):
        whole = train_job(hand_off(model), str(mnist4), str(tmp_path / model / "a" / "model.pt"), device="cpu")
        again = train_job(hand_off(model), str(mnist4), str(tmp_path / model / "b" / "model.pt"), device="cpu")
        a, b = weights(tmp_path / model / "a" / "model.pt"), weights(tmp_path / model / "b" / "model.pt")
        assert all(torch.equal(a[k], b[k]) for k in a)

        steps = {"n": 0}
        real_step = torch.optim.Adam.step

        def dying_step(self, *args, **kwargs):
            steps["n"] += 1
            if steps["n"] == 7:  # the second epoch's second step (5 steps per epoch)
                raise KeyboardInterrupt("killed")
            return real_step(self, *args, **kwargs)

        killed = tmp_path / model / "killed" / "model.pt"
        with monkeypatch.context() as patch:
            patch.setattr(torch.optim.Adam, "step", dying_step)
            with pytest.raises(KeyboardInterrupt):
                train_job(hand_off(model), str(mnist4), str(killed), device="cpu")
        assert not killed.exists() and (killed.parent / "checkpoint.pt").exists()
        resumed = train_job(hand_off(model), str(mnist4), str(killed), device="cpu")
        c = weights(killed)
        assert all(torch.equal(a[k], c[k]) for k in a)
        assert resumed["best_epoch"] == whole["best_epoch"] == again["best_epoch"]
        assert [h["val_nll_nats"] for h in resumed["history"]] == [h["val_nll_nats"] for h in whole["history"]]


def test_jobs_refuse_bad_settings(tmp_path):
    from rgbench.config import ConfigError
    from rgbench.experiments.generative import evaluate_job, train_job

    mnist4, reference, stats = level_files(tmp_path)
    with pytest.raises(ValueError, match="model must be one of"):
        train_job({**hand_off("made"), "model": "pixelcnn"}, str(mnist4), str(tmp_path / "x" / "model.pt"))
    with pytest.raises(ConfigError, match="VAETrainConfig"):
        train_job(hand_off("vae") | {"training": TRAINING["made"]}, str(mnist4), str(tmp_path / "y" / "model.pt"))
    with pytest.raises(ValueError, match="do not fill a batch"):
        train_job({**hand_off("made"), "training": {**TRAINING["made"], "batch_size": 1000}}, str(mnist4),
                  str(tmp_path / "z" / "model.pt"))
    train_job(hand_off("made"), str(mnist4), str(tmp_path / "made" / "model.pt"), device="cpu")
    with pytest.raises(ValueError, match="holds a made model"):
        evaluate_job(hand_off("made_cond"), EVALUATION, str(mnist4), str(tmp_path / "made" / "model.pt"),
                     str(reference), str(stats), str(tmp_path / "m.json"), str(tmp_path / "s.npz"), run_id="x")
    with pytest.raises(ValueError, match="samples >= 2"):
        evaluate_job(hand_off("made"), {**EVALUATION, "samples": 1}, str(mnist4), str(tmp_path / "made" / "model.pt"),
                     str(reference), str(stats), str(tmp_path / "m.json"), str(tmp_path / "s.npz"), run_id="x")


def test_jobs_under_a_probe_take_its_steps_and_say_so(tmp_path):
    from rgbench.experiments.generative import evaluate_job, train_job

    mnist4, reference, stats = level_files(tmp_path)

    def probe(rule: str, family: str) -> dict:  # as workflow/rules/common.smk's probe_handoff writes it
        return {"probe": {"steps": 3, "eval_batches": 1, "max_micro_batch": None, "rule": rule, "family": family,
                          "benchmark": "bench.tsv", "represents": 3}}

    run_dir = tmp_path / "vae_cond"
    payload = train_job({**hand_off("vae_cond"), **probe("generative_train", "train")}, str(mnist4),
                        str(run_dir / "model.pt"), device="cpu")
    assert payload["probe"] and payload["steps_run"] == 3 and len(payload["history"]) == 2
    record = json.loads((run_dir / "probe_generative_train.json").read_text())
    assert record["fits"][0]["steps_planned"] == 3 * 5 and record["fits"][0]["resumed"]
    metrics = evaluate_job(hand_off("vae_cond"), {**EVALUATION, **probe("generative_evaluate", "evaluate")},
                           str(mnist4), str(run_dir / "model.pt"), str(reference), str(stats),
                           str(run_dir / "metrics.json"), str(run_dir / "samples.npz"), run_id="probe", device="cpu")
    assert metrics["n_samples"] == 8 and metrics["test_nll_images"] == 16  # one batch of each loop
    blocks = json.loads((run_dir / "probe_generative_evaluate.json").read_text())["blocks"]
    assert blocks["sampling"]["scale"] == 20 / 8 and blocks["nll"]["scale"] == 40 / 16
    assert json.loads((run_dir / "metrics.json").read_text())["provenance"]["probe"] is True
