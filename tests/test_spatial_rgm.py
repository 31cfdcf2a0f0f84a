"""Spatial RGM: the origin repository's layers, both published loss recipes term by term,
the schedules, receptive windows and the locality measures on hand-built decoders with
known answers, reproducibility, and the jobs end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers import default_config
from rgbench.config import build
from rgbench.models.spatial_rgm import (
    GumbelConfig,
    SpatialLossConfig,
    SpatialRGM,
    SpatialRGMConfig,
    categorical_kl,
    gradient_support,
    loss_terms,
    one_hot_codes,
    parameter_count,
    receptive_window,
    receptive_windows,
)

CODES = 32
SECTION = default_config()["spatial_rgm"]


def model_config(**overrides) -> SpatialRGMConfig:
    """The model config as config.yaml gives it, with ``overrides``."""
    return SpatialRGMConfig(**{**SECTION["model"], **overrides})


def loss_config(grid: str, **overrides) -> SpatialLossConfig:
    return SpatialLossConfig(**{**SECTION["grids"][grid]["loss"], **overrides})


def run_settings(grid: str, epochs: int, seed: int, train_limit: int = 256) -> dict:
    """A training job's hand-off (as spatial_rgm_functions.smk builds it), made small."""
    recipe = SECTION["grids"][grid]
    return {"grid": grid, "epochs": epochs, "seed": seed, "train_limit": train_limit, "model": SECTION["model"],
            **{key: recipe[key] for key in ("batch_size", "lr", "loss", "gumbel")}}


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


# --- the origin repository's layers --------------------------------------------------------------
def test_shapes_and_parameter_count(model: SpatialRGM) -> None:
    # the origin's layers: enc1 544 + 32,832; z1_proj 2,080; enc2 100,416 + 650;
    # dec2 704 + 101,920; dec1 2,112 (1x1) + 32,800 + 513
    assert parameter_count(model) == 274_571
    assert [parameter_count(m) for m in (model.enc1, model.z1_proj, model.enc2, model.dec2, model.dec1)] == [
        33_376, 2_080, 101_066, 102_624, 35_425]
    x = torch.rand(3, 1, 28, 28)
    out = model(x, tau=1.0)
    assert out["z1_logits"].shape == out["z1"].shape == out["prior_logits"].shape == (3, CODES, 7, 7)
    assert out["z2_logits"].shape == (3, 10)
    assert out["recon"].shape == (3, 1, 28, 28)
    assert float(out["recon"].detach().min()) > 0 and float(out["recon"].detach().max()) < 1  # sigmoid output
    # training samples are relaxed, never one-hot: both recipes train with soft Gumbel samples
    assert torch.allclose(out["z1"].sum(1), torch.ones(3, 7, 7), atol=1e-5)
    assert float(out["z1"].detach().max(1).values.min()) < 0.999


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="codes"):
        model_config(codes=1)
    with pytest.raises(ValueError, match="temperatures"):
        GumbelConfig(tau_start=0.0, tau_end=1.0)
    with pytest.raises(ValueError, match="kl_weight"):
        loss_config("notebook", kl_weight=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        loss_config("notebook", reduction="max")
    with pytest.raises(ValueError, match="warmup"):
        loss_config("notebook", warmup_epochs=-1)
    with pytest.raises(ValueError, match="outside"):
        GumbelConfig(1.0, 0.5).tau(5, 5)


# --- schedules and loss terms --------------------------------------------------------------------
def test_temperature_and_warm_up_follow_the_origin_recipe() -> None:
    gumbel = build(GumbelConfig, SECTION["grids"]["origin"]["gumbel"])
    loss = loss_config("origin")
    for epochs in (5, 15):
        # mnist_experiment.py: temp = max(0.5, 1.0 - 0.5 * epoch / total_epochs), epoch from 0
        assert [gumbel.tau(e, epochs) for e in range(epochs)] == pytest.approx(
            [max(0.5, 1.0 - 0.5 * e / epochs) for e in range(epochs)])
    # vae_weight = min(1.0, epoch / 8.0): the first epoch trains the classifier alone
    assert [loss.vae_weight(e) for e in (0, 1, 4, 8, 14)] == [0.0, 0.125, 0.5, 1.0, 1.0]
    notebook = build(GumbelConfig, SECTION["grids"]["notebook"]["gumbel"])
    assert {notebook.tau(e, 3) for e in range(3)} == {1.0}
    assert loss_config("notebook").vae_weight(0) == 1.0


def test_categorical_kl_exact() -> None:
    q = torch.log(torch.tensor([0.5, 0.5])).view(1, 2, 1, 1)
    p = torch.log(torch.tensor([0.25, 0.75])).view(1, 2, 1, 1)
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert categorical_kl(q, p).shape == (1, 1, 1)
    assert float(categorical_kl(q, p)) == pytest.approx(expected, rel=1e-6)
    assert float(categorical_kl(q, q)) == pytest.approx(0.0, abs=1e-7)


def test_loss_reductions_and_weights_term_by_term(model: SpatialRGM) -> None:
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    mean_cfg, sum_cfg = loss_config("notebook"), loss_config("origin")

    def terms(cfg: SpatialLossConfig, vae_weight: float = 1.0) -> dict:
        torch.manual_seed(5)  # the same Gumbel noise for every call
        with torch.no_grad():
            return loss_terms(model, x, y, 0.7, cfg, vae_weight)

    mean, summed = terms(mean_cfg), terms(sum_cfg)
    # per-image sums are the means times the pixels (784) and the cells (49)
    assert float(summed["recon"]) == pytest.approx(784 * float(mean["recon"]), rel=1e-5)
    assert float(summed["kl"]) == pytest.approx(49 * float(mean["kl"]), rel=1e-5)
    assert float(summed["class"]) == pytest.approx(float(mean["class"]), rel=1e-6)
    # seed 001's notebook: MSE + 1.0 CE + 0.1 KL
    assert float(mean["loss"]) == pytest.approx(float(mean["recon"] + mean["class"] + 0.1 * mean["kl"]), rel=1e-6)
    # the origin: (recon + KL(z1) + KL(z2)) / B, warmed up, + 50 CE
    assert float(terms(sum_cfg, 0.25)["loss"]) == pytest.approx(
        float(0.25 * (summed["recon"] + summed["kl"] + summed["kl_z2"]) + 50 * summed["class"]), rel=1e-6)
    # in the first epoch (warm-up weight 0) only the classifier trains: 50 x CE, as the
    # origin's first logged loss (115.6 = 50 x ~ln 10) shows
    assert float(terms(sum_cfg, 0.0)["loss"]) == pytest.approx(50 * float(summed["class"]), rel=1e-6)


def test_kl_to_uniform_of_z2_exact() -> None:
    torch.manual_seed(0)
    model = SpatialRGM(model_config())
    with torch.no_grad():  # enc2's last layer outputs its bias: uniform, then certain
        model.enc2[-1].weight.zero_()
        model.enc2[-1].bias.zero_()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    assert float(loss_terms(model, x, y, 1.0, loss_config("origin"))["kl_z2"]) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.enc2[-1].bias[3] = 60.0
    assert float(loss_terms(model, x, y, 1.0, loss_config("origin"))["kl_z2"]) == pytest.approx(math.log(10),
                                                                                                  rel=1e-5)


def test_hard_codes_are_one_hot_argmax(model: SpatialRGM) -> None:
    x = torch.rand(4, 1, 28, 28)
    hard = model.encode_hard(x)
    logits = model.z1_logits(x)
    assert torch.equal(hard["codes"], logits.argmax(1))
    assert torch.equal(hard["z1"].sum(1), torch.ones(4, 7, 7))
    assert set(hard["z1"].unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(hard["recon"], model.decode(one_hot_codes(hard["codes"], CODES)))


# --- receptive windows on hand-built decoders ---------------------------------------------------
def test_receptive_window_transposed_conv_geometry(model: SpatialRGM) -> None:
    # two k4 s2 p1 transposed convolutions: cell i reaches rows 4i-3 .. 4i+6 (clipped to 0..27)
    decoder = nn.Sequential(nn.ConvTranspose2d(CODES, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 1, 4, 2, 1),
                            nn.Sigmoid())
    assert receptive_window(decoder, (3, 3)) == (9, 18, 9, 18)
    assert receptive_window(decoder, (0, 6)) == (0, 6, 21, 27)
    assert receptive_window(decoder, (2, 5)) == (5, 14, 17, 26)
    # the model's leading 1x1 layer does not widen it
    assert torch.equal(receptive_windows(model.dec1), receptive_windows(decoder))
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


# --- the locality measures on hand-built decoders ---------------------------------------------------
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


def _random_patch_share_brute_force(change: torch.Tensor) -> float:
    """Mean over all 25 x 25 positions of a 4x4 patch of the share of ``change`` inside it."""
    sums = nn.functional.avg_pool2d(change[None, None], 4, stride=1)[0, 0] * 16
    return float(sums.mean() / change.sum())


def test_patch_coverage_equals_counting_positions() -> None:
    from rgbench.experiments.spatial_rgm import patch_coverage

    coverage = patch_coverage((28, 28), (4, 4))
    counts = torch.zeros(28, 28, dtype=torch.float64)
    for r in range(25):
        for c in range(25):
            counts[r:r + 4, c:c + 4] += 1
    assert torch.allclose(coverage, counts / 625)
    change = torch.rand(28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float((change * coverage).sum() / change.sum()) == pytest.approx(_random_patch_share_brute_force(change))


def test_locality_measures_known_answers() -> None:
    from rgbench.experiments.spatial_rgm import locality_scores

    codes = torch.randint(0, 8, (2, 7, 7), generator=torch.Generator().manual_seed(0))
    own_blocks = receptive_windows(nn.Sequential(nn.ConvTranspose2d(8, 1, 4, 4)))
    # purely local decoder: all change inside the cell's own patch (= its window here)
    local = locality_scores(_block_decoder(8, 0.0), codes, 8, own_blocks, alternatives=3, seed=0)
    assert local["own_patch"] == pytest.approx(1.0, abs=1e-12)
    assert local["window"] == pytest.approx(1.0, abs=1e-12)
    assert local["perturbations"] == 2 * 49 * 3
    assert local["unchanged_share"] == 0.0
    assert np.allclose(local["per_cell_own"], 1.0)
    # a random patch catches a change confined to one aligned block only where they overlap:
    # far below the own patch, and exactly what counting positions gives
    block = torch.zeros(28, 28, dtype=torch.float64)
    block[12:16, 8:12] = 1.0
    assert 0 < local["random_patch"] < 0.05
    per_block = [_random_patch_share_brute_force(torch.roll(block, (dr, dc), (0, 1)))
                 for dr in range(-12, 13, 4) for dc in range(-8, 17, 4)]
    assert min(per_block) <= local["random_patch"] <= max(per_block)
    # leak 24.5: a code step d changes its block by d * 1.5 and the other 768 pixels by d * 0.5,
    # so the share inside the own patch is 16 * 1.5 / (16 * 1.5 + 768 * 0.5) = 24 / 408 for every change
    leaky = locality_scores(_block_decoder(8, 24.5), codes, 8, own_blocks, alternatives=3, seed=0)
    assert leaky["own_patch"] == pytest.approx(24 / 408, rel=1e-9)
    assert leaky["window"] == pytest.approx(24 / 408, rel=1e-9)
    assert np.allclose(leaky["per_cell_own"], 24 / 408)
    # a decoder that paints the right-hand neighbour's patch instead: own share 0 (the measure can fail)
    def shifted(z1: torch.Tensor) -> torch.Tensor:
        return torch.roll(_block_decoder(8, 0.0)(z1), 4, dims=-1)
    wide = receptive_windows(nn.Sequential(nn.ConvTranspose2d(8, 1, 12, 4, 4)))
    moved = locality_scores(shifted, codes[:, :, :6], 8, wide[:, :6], alternatives=2, seed=0)
    assert moved["own_patch"] == 0.0


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
        records.append(train_job(run_settings("notebook", epochs=1, seed=3), mnist_small, tmp_path / name / "model.pt",
                                 tmp_path / name / "train.json", device="cpu"))
    a, b = (load_model(tmp_path / name / "model.pt").state_dict() for name in ("a", "b"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert records[0]["history"][0]["train_loss"] == records[1]["history"][0]["train_loss"]
    assert records[0]["parameters"] == 274_571 and records[0]["n_train"] == 256 and records[0]["n_val"] == 100
    assert records[0]["steps_run"] == 4  # 256 images in batches of 64
    other = train_job(run_settings("notebook", epochs=1, seed=4), mnist_small, tmp_path / "c" / "model.pt",
                      tmp_path / "c" / "train.json", device="cpu")
    assert other["history"][0]["train_loss"] != records[0]["history"][0]["train_loss"]
    assert json.loads((tmp_path / "a" / "train.json").read_text())["epochs"] == 1


def test_the_origin_recipe_schedules_reach_the_training_loop(tmp_path: Path, mnist_small: Path) -> None:
    from rgbench.experiments.spatial_rgm import train_job

    record = train_job(run_settings("origin", epochs=2, seed=0, train_limit=128), mnist_small,
                       tmp_path / "model.pt", tmp_path / "train.json", device="cpu")
    extra = [h["extra"] for h in record["history"]]
    assert [e["tau"] for e in extra] == [1.0, 0.75]
    assert [e["vae_weight"] for e in extra] == [0.0, 0.125]
    # epoch 1 is 50 x CE alone: about 50 ln 10 for a model that starts near uniform
    assert 80 < record["history"][0]["train_loss"] < 130


def _tiny_reference(tmp_path: Path, mnist_small: Path) -> Path:
    """A small reference classifier trained here (the pipeline's own comes from another rule)."""
    from rgbench.data.mnist import load_splits
    from rgbench.evaluation.reference import ReferenceCNN, ReferenceConfig, save_reference_classifier

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
    return tmp_path / "reference.pt"


def test_evaluation_job_end_to_end(tmp_path: Path, mnist_small: Path) -> None:
    from rgbench.experiments.spatial_rgm import evaluate_job, train_job
    from rgbench.io import load_npz
    from rgbench.plotting.spatial_rgm import FIGURES, figures_job

    reference = _tiny_reference(tmp_path, mnist_small)
    evaluation = {**SECTION["evaluation"], "samples_per_digit": 6, "locality_images": 1, "locality_alternatives": 2,
                  "global_images": 30, "figure_examples": 2, "figure_samples": 3}
    metrics_files = []
    for seed in (0, 1):
        run = tmp_path / f"seed-{seed}"
        train_job(run_settings("notebook", epochs=2, seed=seed), mnist_small, run / "model.pt", run / "train.json",
                  device="cpu")
        evaluate_job({"test_limit": 200, "evaluation": evaluation}, run / "model.pt", run / "train.json",
                     mnist_small, reference, run / "metrics.json", run / "arrays.npz",
                     run_id=f"grid-notebook_epochs-2_seed-{seed}", device="cpu")
        metrics_files.append(run / "metrics.json")
    record = json.loads(metrics_files[0].read_text())
    for column in ("epochs", "test_accuracy", "recon_mse", "locality", "conditional_recognition", "diversity_ratio",
                   "global_switch_share", "val_accuracy", "train_loss_epoch_1", "train_loss_epoch_2"):
        assert column in record["metrics"], column
    assert record["seed"] == 0 and record["run_id"] == "grid-notebook_epochs-2_seed-0"
    assert record["params"]["grid"] == "notebook" and record["params"]["class_weight"] == 1.0
    assert record["provenance"]["n_test"] == 200 and record["provenance"]["steps_run"] == 8
    for key in ("test_accuracy", "conditional_recognition", "global_switch_share", "locality"):
        assert 0.0 <= record["metrics"][key] <= 1.0, key
    assert record["metrics"]["diversity_ratio"] > 0
    # the decoder is convolutional: a code switch never reaches outside the derived window
    assert record["metrics"]["locality_window"] == pytest.approx(1.0, abs=1e-12)
    # the own patch gets more than chance, and chance is about one 49th of the image
    assert record["metrics"]["locality_random_patch"] == pytest.approx(1 / 49, abs=0.01)
    assert record["metrics"]["train_loss_epoch_2"] == record["extra"]["history"][1]["train_loss"]
    sweep = record["extra"]["prior_temperature_sweep"]
    assert set(sweep) == {"1.0", "0.7", "0.5", "0.3"}
    arrays = load_npz(tmp_path / "seed-0" / "arrays.npz")
    assert arrays["samples"].shape == (10, 3, 28, 28)
    assert arrays["example_codes"].shape == (2, 7, 7) and arrays["example_z2"].shape == (2, 10)
    assert arrays["locality_per_cell_own"].shape == (7, 7)
    for name in FIGURES:
        figures_job({"dpi": 60, "figure": name}, SimpleNamespace(arrays=tmp_path / "seed-0" / "arrays.npz"),
                   tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    claims = Path(__file__).resolve().parents[1] / "src" / "rgbench" / "claims" / "spatial_rgm.yaml"
    figures_job({"dpi": 60, "figure": "seeds"}, SimpleNamespace(metrics=metrics_files, claims=claims),
               tmp_path / "seeds.png")
    assert (tmp_path / "seeds.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown spatial_rgm figure"):
        figures_job({"dpi": 60, "figure": "nope"}, SimpleNamespace(), tmp_path / "x.png")
