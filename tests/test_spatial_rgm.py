"""Spatial RGM: shapes, hard vs soft codes, receptive windows and the locality metric on
hand-built decoders with known answers, reproducibility, and the evaluation job end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers import default_config
from rgbench.models.spatial_rgm import (
    SpatialRGM,
    SpatialRGMConfig,
    categorical_kl,
    gradient_support,
    loss_terms,
    one_hot_codes,
    parameter_count,
    receptive_window,
    receptive_windows,
    tau_at,
)

CODES = 32


def model_config(**overrides) -> SpatialRGMConfig:
    """The model config as the workflow builds it from config.yaml, with ``overrides``."""
    section = default_config()["spatial_rgm"]
    return SpatialRGMConfig(**{**section["model"], **section["loss"], **section["gumbel"], **overrides})


def run_settings(epochs: int, seed: int, train_limit: int = 256) -> dict:
    """A training job's hand-off (as spatial_rgm_functions.smk builds it), made small."""
    section = default_config()["spatial_rgm"]
    return {"epochs": epochs, "seed": seed, "train_limit": train_limit,
            "train": {**section["train"], "batch_size": 64, "lr": 0.002},
            "model": section["model"], "loss": section["loss"], "gumbel": section["gumbel"]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The jobs run single-threaded (rule threads: 1); tiny tests are also faster that way."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> SpatialRGM:
    torch.manual_seed(0)
    return SpatialRGM(model_config()).eval()


@pytest.fixture(scope="module")
def mnist_small(tmp_path_factory: pytest.TempPathFactory, mnist_subset_dir: Path) -> Path:
    """Only the 28x28 cache of the shipped subset (the other caches are not needed here)."""
    from rgbench.data.mnist import build_cache, fetch_mnist

    out = tmp_path_factory.mktemp("srgm_mnist")
    fetch_mnist(str(mnist_subset_dir), out / "raw", checksums="manifest")
    build_cache(out / "raw", out / "mnist28.npz", val_size=100, seed=0)
    return out / "mnist28.npz"


# --- shapes ------------------------------------------------------------------------------------
def test_shapes_and_parameter_count(model: SpatialRGM) -> None:
    # seed 001's layers: 544 + 32,832 (enc1) + 2,080 (z1_proj) + 101,066 (enc2)
    # + 102,624 (dec2) + 33,857 (dec1) = 273,003, the "about 275k"
    assert parameter_count(model) == 273_003
    x = torch.rand(3, 1, 28, 28)
    out = model(x, tau=1.0)
    assert out["z1_logits"].shape == (3, CODES, 7, 7)
    assert out["z1"].shape == (3, CODES, 7, 7)
    assert out["z2_logits"].shape == (3, 10)
    assert out["prior_logits"].shape == (3, CODES, 7, 7)
    assert out["recon"].shape == (3, 1, 28, 28)
    assert float(out["recon"].detach().min()) > 0 and float(out["recon"].detach().max()) < 1  # sigmoid output
    terms = loss_terms(model, x, torch.tensor([0, 1, 2]), tau=1.0)
    expected = terms["recon"] + terms["class"] + 0.1 * terms["kl"]
    assert torch.allclose(terms["loss"], expected)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="codes"):
        model_config(codes=1)
    with pytest.raises(ValueError, match="temperature"):
        model_config(tau_start=0.0)
    with pytest.raises(ValueError, match="kl_weight"):
        model_config(kl_weight=-1.0)


def test_tau_schedule_is_geometric() -> None:
    config = model_config(tau_start=1.0, tau_end=0.25)
    assert tau_at(config, 0.0) == pytest.approx(1.0)
    assert tau_at(config, 0.5) == pytest.approx(0.5)
    assert tau_at(config, 1.0) == pytest.approx(0.25)
    assert tau_at(config, 2.0) == pytest.approx(0.25)  # clipped


def test_categorical_kl_exact() -> None:
    q = torch.log(torch.tensor([0.5, 0.5])).view(1, 2, 1, 1)
    p = torch.log(torch.tensor([0.25, 0.75])).view(1, 2, 1, 1)
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert float(categorical_kl(q, p)) == pytest.approx(expected, rel=1e-6)
    assert float(categorical_kl(q, q)) == pytest.approx(0.0, abs=1e-7)


# --- hard vs soft codes ----------------------------------------------------------------------
def test_hard_codes_are_one_hot_argmax(model: SpatialRGM) -> None:
    x = torch.rand(4, 1, 28, 28)
    hard = model.encode_hard(x)
    logits = model.z1_logits(x)
    assert torch.equal(hard["codes"], logits.argmax(1))
    assert torch.equal(hard["z1"].sum(1), torch.ones(4, 7, 7))
    assert set(hard["z1"].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(hard["z1"].argmax(1), hard["codes"])
    assert torch.allclose(hard["recon"], model.decode(one_hot_codes(hard["codes"], CODES)))


def test_soft_codes_are_relaxed_and_straight_through_is_hard() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, CODES, 7, 7, requires_grad=True)
    m = SpatialRGM(model_config())
    soft = m.sample_z1(logits, tau=1.0, hard=False)
    assert torch.allclose(soft.sum(1), torch.ones(2, 7, 7), atol=1e-5)
    assert float(soft.max(1).values.min()) < 0.999  # relaxed, not one-hot
    hard = m.sample_z1(logits, tau=1.0, hard=True)
    assert set(hard.detach().unique().tolist()) == {0.0, 1.0}
    # straight-through: the forward pass is one-hot, yet gradients reach the logits
    (hard * torch.randn_like(hard)).sum().backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    # a cold relaxed sample approaches a one-hot vector
    cold = m.sample_z1(logits.detach(), tau=0.01, hard=False)
    assert float(cold.max(1).values.mean()) > 0.99


# --- receptive windows on hand-built decoders ---------------------------------------------------
def test_receptive_window_transposed_conv_geometry() -> None:
    # two k4 s2 p1 transposed convolutions: cell i reaches rows 4i-3 .. 4i+6 (clipped to 0..27)
    decoder = nn.Sequential(nn.ConvTranspose2d(CODES, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 1, 4, 2, 1),
                            nn.Sigmoid())
    assert receptive_window(decoder, (3, 3)) == (9, 18, 9, 18)
    assert receptive_window(decoder, (0, 6)) == (0, 6, 21, 27)
    assert receptive_window(decoder, (2, 5)) == (5, 14, 17, 26)
    windows = receptive_windows(decoder)
    assert windows.shape == (7, 7, 4)
    # a kernel-4 stride-4 layer writes each cell to its own 4x4 block only
    blocks = nn.Sequential(nn.ConvTranspose2d(CODES, 1, 4, 4))
    assert receptive_window(blocks, (1, 2)) == (4, 7, 8, 11)
    # a trailing 3x3 convolution (padding 1) widens the block by one pixel on each side
    smoothed = nn.Sequential(nn.ConvTranspose2d(CODES, 4, 4, 4), nn.Conv2d(4, 1, 3, padding=1))
    assert receptive_window(smoothed, (1, 2)) == (3, 8, 7, 12)
    assert receptive_window(nn.Sequential(nn.Upsample(scale_factor=4)), (6, 0)) == (24, 27, 0, 3)


def test_receptive_window_refuses_mixing_layers_and_bad_cells() -> None:
    with pytest.raises(TypeError, match="Linear"):
        receptive_window(nn.Sequential(nn.ConvTranspose2d(CODES, 1, 4, 4), nn.Linear(28, 28)), (0, 0))
    with pytest.raises(ValueError, match="outside"):
        receptive_window(nn.Sequential(nn.ConvTranspose2d(CODES, 1, 4, 4)), (7, 0))


def test_gradient_support_matches_geometry(model: SpatialRGM) -> None:
    # with positive weights and no ReLU the support fills the derived window exactly
    decoder = nn.Sequential(nn.ConvTranspose2d(CODES, 2, 4, 2, 1), nn.ConvTranspose2d(2, 1, 4, 2, 1))
    with torch.no_grad():
        for layer in decoder:
            layer.weight.uniform_(0.1, 1.0)
    z1 = one_hot_codes(torch.zeros(1, 7, 7, dtype=torch.long), CODES)
    for cell in [(3, 3), (0, 0), (6, 2)]:
        r0, r1, c0, c1 = receptive_window(decoder, cell)
        expected = torch.zeros(28, 28, dtype=torch.bool)
        expected[r0:r1 + 1, c0:c1 + 1] = True
        assert torch.equal(gradient_support(decoder, z1, cell), expected)
    # the real decoder: whatever its ReLUs do, the support stays inside the window
    z1 = one_hot_codes(torch.randint(0, CODES, (1, 7, 7), generator=torch.Generator().manual_seed(0)), CODES)
    r0, r1, c0, c1 = receptive_window(model.dec1, (3, 4))
    support = gradient_support(model.decode, z1, (3, 4))
    outside = support.clone()
    outside[r0:r1 + 1, c0:c1 + 1] = False
    assert support.any() and not outside.any()


# --- the locality metric on hand-built decoders ---------------------------------------------------
def _block_decoder(codes: int, leak: float):
    """Each cell paints its own 4x4 block with value code/codes; ``leak`` adds leak/49 times the
    mean code value of the whole grid to every pixel (a global, non-local path)."""
    values = torch.arange(codes, dtype=torch.float64) / codes

    def decode(z1: torch.Tensor) -> torch.Tensor:
        cell_values = torch.einsum("nkrc,k->nrc", z1.double(), values)
        local = cell_values.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
        glob = leak * cell_values.sum(dim=(1, 2)) / 49
        return (local + glob[:, None, None]).unsqueeze(1)

    return decode


def test_locality_metric_known_answers() -> None:
    from rgbench.experiments.spatial_rgm import locality_scores, window_area_share

    codes = torch.randint(0, 8, (2, 7, 7), generator=torch.Generator().manual_seed(0))
    own_blocks = receptive_windows(nn.Sequential(nn.ConvTranspose2d(8, 1, 4, 4)))
    # purely local decoder: all change inside the window, which is the cell's own patch
    local = locality_scores(_block_decoder(8, 0.0), codes, 8, own_blocks, alternatives=3, seed=0)
    assert local["locality"] == pytest.approx(1.0, abs=1e-12)
    assert local["cell_share"] == pytest.approx(1.0, abs=1e-12)
    assert local["perturbations"] == 2 * 49 * 3
    assert local["unchanged_share"] == 0.0
    assert np.allclose(local["per_cell"], 1.0)
    # leak 24.5: a code step d changes its block by d * 1.5 and the other 768 pixels by d * 0.5,
    # so the share inside is 16 * 1.5 / (16 * 1.5 + 768 * 0.5) = 24 / 408 for every change
    leaky = locality_scores(_block_decoder(8, 24.5), codes, 8, own_blocks, alternatives=3, seed=0)
    assert leaky["locality"] == pytest.approx(24 / 408, rel=1e-9)
    assert np.allclose(leaky["per_cell"], 24 / 408)
    assert window_area_share(own_blocks) == pytest.approx(16 / 784)


def test_alternative_codes_exclude_current() -> None:
    from rgbench.experiments.spatial_rgm import alternative_codes

    rng = np.random.default_rng(0)
    alt = alternative_codes(5, 8, 4, rng)
    assert len(alt) == 4 and 5 not in alt and len(set(alt.tolist())) == 4
    assert sorted(alternative_codes(1, 3, 10, rng).tolist()) == [0, 2]


def test_pairwise_l1_exact() -> None:
    from rgbench.experiments.spatial_rgm import mean_pairwise_l1

    images = torch.stack([torch.zeros(2, 2), torch.ones(2, 2), torch.full((2, 2), 0.5)])
    # pairs: |0-1| = 1, |0-0.5| = 0.5, |1-0.5| = 0.5 -> mean 2/3
    assert mean_pairwise_l1(images) == pytest.approx(2 / 3)


# --- training and evaluation jobs ------------------------------------------------------------------
def test_training_is_reproducible(tmp_path: Path, mnist_small: Path) -> None:
    from rgbench.experiments.spatial_rgm import load_model, train_job

    records = []
    for name in ("a", "b"):
        records.append(train_job(run_settings(epochs=1, seed=3), mnist_small, tmp_path / name / "model.pt",
                                 tmp_path / name / "train.json", device="cpu"))
    a, b = (load_model(tmp_path / name / "model.pt").state_dict() for name in ("a", "b"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert records[0]["history"][0]["train_loss"] == records[1]["history"][0]["train_loss"]
    assert records[0]["parameters"] == 273_003 and records[0]["n_train"] == 256
    other = train_job(run_settings(epochs=1, seed=4), mnist_small, tmp_path / "c" / "model.pt",
                      tmp_path / "c" / "train.json", device="cpu")
    assert other["history"][0]["train_loss"] != records[0]["history"][0]["train_loss"]
    assert json.loads((tmp_path / "a" / "train.json").read_text())["epochs"] == 1


def test_evaluation_job_end_to_end(tmp_path: Path, mnist_small: Path) -> None:
    """The three experiments with a tiny reference classifier trained here (the pipeline's
    own classifier comes from another rule)."""
    from rgbench.data.mnist import load_splits
    from rgbench.evaluation.reference import ReferenceCNN, ReferenceConfig, save_reference_classifier
    from rgbench.experiments.spatial_rgm import evaluate_job, train_job
    from rgbench.io import load_npz
    from rgbench.plotting.spatial_rgm import FIGURES

    torch.manual_seed(0)
    splits = load_splits(mnist_small)
    clf = ReferenceCNN(ReferenceConfig(channels1=4, channels2=8, hidden=16, dropout=0.0))
    optimizer = torch.optim.Adam(clf.parameters(), lr=3e-3)
    x = (torch.from_numpy(splits.train_images).float() / 255 - 0.1307).unsqueeze(1) / 0.3081
    y = torch.from_numpy(splits.train_labels.astype(np.int64))
    for start in range(0, len(x), 100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(clf(x[start:start + 100]), y[start:start + 100]).backward()
        optimizer.step()
    clf.eval()
    save_reference_classifier(clf, tmp_path / "reference.pt")

    train_job(run_settings(epochs=1, seed=0), mnist_small, tmp_path / "run" / "model.pt",
              tmp_path / "run" / "train.json", device="cpu")
    evaluation = {**default_config()["spatial_rgm"]["evaluation"], "samples_per_digit": 6, "locality_images": 1,
                  "locality_alternatives": 2, "global_images": 30, "figure_examples": 2, "figure_samples": 3}
    metrics = evaluate_job({"test_limit": 200, "evaluation": evaluation}, tmp_path / "run" / "model.pt",
                           tmp_path / "run" / "train.json", mnist_small, tmp_path / "reference.pt",
                           tmp_path / "run" / "metrics.json", tmp_path / "run" / "arrays.npz",
                           run_id="epochs-1_seed-0", device="cpu")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for column in ("epochs", "test_accuracy", "recon_mse", "locality", "conditional_recognition", "diversity",
                   "global_switch_share", "seconds_per_epoch"):
        assert column in record["metrics"]
    assert record["seed"] == 0 and record["run_id"] == "epochs-1_seed-0"
    for key in ("test_accuracy", "conditional_recognition", "global_switch_share", "locality"):
        assert 0.0 <= metrics[key] <= 1.0
    # the decoder is convolutional: a code switch cannot reach outside the derived window
    assert metrics["locality"] == pytest.approx(1.0, abs=1e-12)
    # window sides 7, 10, 10, 10, 10, 10, 7 pixels (clipped at the borders)
    assert metrics["locality_window_area"] == pytest.approx((64 / 7) ** 2 / 784, rel=1e-9)
    assert record["provenance"]["n_test"] == 200 and metrics["recon_mse"] > 0
    sweep = record["extra"]["prior_temperature_sweep"]
    assert set(sweep) == {"1.0", "0.7", "0.5", "0.3"}
    assert all(0.0 <= entry["conditional_recognition"] <= 1.0 for entry in sweep.values())
    arrays = load_npz(tmp_path / "run" / "arrays.npz")
    assert arrays["samples"].shape == (10, 3, 28, 28)
    assert arrays["example_codes"].shape == (2, 7, 7) and arrays["example_z2"].shape == (2, 10)
    assert arrays["locality_per_cell"].shape == (7, 7)
    for name, draw in FIGURES.items():
        draw(tmp_path / "run" / "arrays.npz", tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
