"""Reference classifier: training job on the shipped subset, checksum, inputs, sample quality."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbench.data.mnist import load_splits
from rgbench.data.preprocess import resize
from rgbench.evaluation.quality import conditional_recognition, load_reference_stats, sample_quality
from rgbench.evaluation.reference import (ChecksumError, load_reference_classifier, outlier_images, random_shift,
                                          to_input)
from helpers import default_config
from rgbench.experiments.reference_classifier import (TRAIN_KEYS, ReferenceTrainConfig, batch_loss,
                                                      independent_pixel_samples, train_job)
from rgbench.io import read_json

# A few seconds of training on the 1,400-image subset: about 97% test accuracy.
SECTION = {**{key: default_config()["reference_classifier"][key] for key in TRAIN_KEYS},
           "seed": 0, "epochs": 6, "batch_size": 32, "lr": 0.003, "channels1": 8, "channels2": 16,
           "hidden": 32, "dropout": 0.0, "fid_samples": 300}


def _train(mnist28: Path, out: Path, **changes) -> dict:
    return train_job({**SECTION, **changes}, mnist28, out / "model.pt", out / "reference_stats.npz",
                     out / "metrics.json", run_id="seed-0", device="cpu")


@pytest.fixture(scope="module")
def trained(mnist28: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference")
    _train(mnist28, out)
    return out


@pytest.fixture(scope="module")
def classifier(trained: Path):
    return load_reference_classifier(trained / "model.pt")


@pytest.fixture(scope="module")
def test_split(mnist28: Path):
    splits = load_splits(mnist28)
    return splits.test_images, splits.test_labels


def test_training_job_writes_contract_outputs(trained: Path):
    record = read_json(trained / "metrics.json")
    metrics = record["metrics"]
    assert record["experiment"] == "reference_classifier" and record["run_id"] == "seed-0"
    assert 0.9 <= metrics["test_accuracy"] <= 1.0
    assert metrics["train_seconds"] > 0 and metrics["train_cpu_seconds"] > 0
    assert record["provenance"]["epochs_run"] == SECTION["epochs"] and record["provenance"]["n_val"] == 100
    assert len(record["extra"]["history"]) == SECTION["epochs"]
    assert (trained / "model.pt.sha256").read_text().split()[0] == metrics["sha256"]
    stats = load_reference_stats(trained / "reference_stats.npz")
    assert stats["mu"].shape == (32,) and stats["sigma"].shape == (32, 32)
    assert str(stats["model_sha256"]) == metrics["sha256"]
    # Scale: real train images sit far closer to the test set than independent-pixel samples.
    assert 0 < metrics["fid_floor"] < metrics["fid_independent_marginal"] / 5
    assert metrics["fid_floor"] < metrics["fid_independent_bernoulli"] / 5
    # Outlier exposure never showed it independent-pixel samples; they still are not digits.
    assert metrics["recognisable_fraction_independent_marginal"] <= 0.05
    assert metrics["recognisable_fraction_independent_bernoulli"] <= 0.05
    assert float(stats["fid_floor"]) == pytest.approx(metrics["fid_floor"])
    assert not list(trained.glob("checkpoint*.pt")), "the finished job leaves no checkpoint behind"


def test_training_is_reproducible_with_a_fixed_seed(mnist28: Path, tmp_path: Path):
    runs = [_train(mnist28, tmp_path / name, epochs=1, seed=seed)["metrics"] for name, seed in
            (("a", 3), ("b", 3), ("c", 4))]
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]
    assert runs[0]["fid_floor"] == pytest.approx(runs[1]["fid_floor"], rel=1e-9)
    assert runs[0]["sha256"] == runs[1]["sha256"] != runs[2]["sha256"], "the weights file itself is reproducible"
    a, b, c = (torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"] for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"]), "another seed gives other weights"


def test_checksum_mismatch_on_load_fails(trained: Path, tmp_path: Path):
    shutil.copy(trained / "model.pt", tmp_path / "model.pt")
    shutil.copy(trained / "model.pt.sha256", tmp_path / "model.pt.sha256")
    assert load_reference_classifier(tmp_path / "model.pt").sha256 is not None
    data = bytearray((tmp_path / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="SHA-256"):
        load_reference_classifier(tmp_path / "model.pt")
    (tmp_path / "model.pt.sha256").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        load_reference_classifier(tmp_path / "model.pt")


def test_predict_proba_and_features_accept_uint8_float_and_32px(classifier, test_split):
    images = test_split[0][:64]
    probs = classifier.predict_proba(images)
    assert probs.shape == (64, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(classifier.predict_proba(images.astype(np.float32) / 255.0), probs, atol=1e-5)
    assert classifier.features(images).shape == (64, 32)
    binary = images > 127
    np.testing.assert_allclose(classifier.predict_proba(binary), classifier.predict_proba(binary.astype(np.uint8) * 255),
                               atol=1e-6)
    # The RGM's 32x32 resize, brought back to 28: nearly the same predictions.
    agree = (classifier.predict_proba(resize(images, 32)).argmax(1) == probs.argmax(1)).mean()
    assert agree >= 0.9
    with pytest.raises(ValueError, match="shape"):
        classifier.predict_proba(np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier.predict_proba(np.full((3, 28, 28), 255.0))


def test_recognisable_fraction_high_on_confident_digits_and_near_zero_on_noise(classifier, test_split, trained):
    images, labels = test_split
    stats_path = trained / "reference_stats.npz"
    probs = classifier.predict_proba(images)
    confident = images[(probs.max(1) > 0.9) & (probs.argmax(1) == labels)]
    assert len(confident) > 200
    assert sample_quality(classifier, confident, stats_path)["recognisable_fraction"] == 1.0
    noise = np.random.default_rng(0).integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    noise_quality = sample_quality(classifier, noise, stats_path)
    assert noise_quality["recognisable_fraction"] <= 0.05
    real_quality = sample_quality(classifier, images, stats_path)
    assert real_quality["recognisable_fraction"] > 0.5
    assert set(real_quality) >= {"fid", "recognisable_fraction", "class_entropy", "inception_score", "class_histogram"}
    assert len(real_quality["class_histogram"]) == 10 and sum(real_quality["class_histogram"]) == pytest.approx(1.0)
    assert real_quality["class_entropy"] > 2.0  # the test set holds every digit
    assert real_quality["inception_score"] > noise_quality["inception_score"]


def test_fid_is_zero_on_the_test_set_and_grows_with_pixel_noise(classifier, test_split, trained):
    images = test_split[0].astype(np.float32) / 255.0
    stats_path = trained / "reference_stats.npz"
    # The stats are the test set's own features, so the test set scores (numerically) zero.
    assert sample_quality(classifier, test_split[0], stats_path)["fid"] == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    fids = [sample_quality(classifier, np.clip(images + rng.normal(scale=s, size=images.shape), 0, 1), stats_path)["fid"]
            for s in (0.1, 0.3, 0.6)]
    assert 0 < fids[0] < fids[1] < fids[2], fids


def test_conditional_recognition(classifier, test_split):
    images, labels = test_split
    accuracy = float((classifier.predict(images) == labels).mean())
    assert conditional_recognition(classifier, images, labels) == pytest.approx(accuracy)
    assert conditional_recognition(classifier, images, (labels + 1) % 10) < 0.1
    with pytest.raises(ValueError, match="intended labels"):
        conditional_recognition(classifier, images, labels[:-1])


def test_sample_quality_refuses_stats_of_other_weights(classifier, test_split, trained, tmp_path):
    from rgbench.io import load_npz, save_npz_atomic

    stats = load_npz(trained / "reference_stats.npz")
    stats["model_sha256"] = np.str_("0" * 64)
    save_npz_atomic(tmp_path / "other.npz", **stats)
    with pytest.raises(ValueError, match="weights"):
        sample_quality(classifier, test_split[0][:10], tmp_path / "other.npz")


def test_random_shift_translates_without_changing_content():
    images = np.zeros((6, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = np.arange(1, 65, dtype=np.uint8).reshape(8, 8)  # a patch away from the border
    x = to_input(images)
    shifted = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    moved_by = set()
    for original, moved in zip(x[:, 0], shifted[:, 0]):
        rows, cols = np.nonzero((moved > original.min() + 1e-3).numpy())
        assert len(rows) == 64, "the patch moves whole; the filled border is background"
        dr, dc = rows.min() - 10, cols.min() - 10
        assert abs(dr) <= 2 and abs(dc) <= 2
        assert torch.equal(moved[rows.min():rows.min() + 8, cols.min():cols.min() + 8], original[10:18, 10:18])
        moved_by.add((dr, dc))
    assert len(moved_by) > 1, "offsets are drawn per image"
    assert torch.equal(random_shift(x, 0), x)


def test_independent_pixel_samples_match_pixel_marginals(mnist28: Path):
    train = load_splits(mnist28).train_images
    samples = independent_pixel_samples(train, 4000, seed=0)
    assert samples["marginal"].dtype == np.uint8 and samples["marginal"].shape == (4000, 28, 28)
    np.testing.assert_allclose(samples["marginal"].mean(0) / 255, train.mean(0) / 255, atol=0.05)
    np.testing.assert_allclose(samples["bernoulli"].mean(0), train.mean(0) / 255, atol=0.05)
    assert set(np.unique(samples["bernoulli"])) <= {0.0, 1.0}


def test_outlier_images_are_seeded_noise_in_range():
    a = outlier_images(64, generator=torch.Generator().manual_seed(1))
    b = outlier_images(64, generator=torch.Generator().manual_seed(1))
    assert a.shape == (64, 1, 28, 28) and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert not torch.equal(a, outlier_images(64, generator=torch.Generator().manual_seed(2)))


def test_batch_loss_is_cross_entropy_plus_the_outlier_kl():
    from rgbench.config import build
    from rgbench.evaluation.reference import ReferenceCNN

    cfg = build(ReferenceTrainConfig, {**SECTION, "max_shift": 0, "outlier_fraction": 0.5})
    torch.manual_seed(0)
    model = ReferenceCNN(cfg.model_config()).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.zero_()  # uniform predictions: CE = ln 10, KL(uniform || p(noise)) = 0
        assert float(batch_loss(model, x, y, cfg)) == pytest.approx(np.log(10), rel=1e-6)
        model.fc2.bias[0] = 2.0  # every image: p = softmax([2, 0, ..., 0])
        log_p = torch.log_softmax(model.fc2.bias, 0)
        expected_ce = float(-log_p[y].mean())
        expected_kl = float(-log_p.mean() - np.log(10))
        assert float(batch_loss(model, x, y, cfg)) == pytest.approx(expected_ce + expected_kl, rel=1e-6)
        no_outliers = build(ReferenceTrainConfig, {**SECTION, "max_shift": 0, "outlier_fraction": 0.0})
        assert float(batch_loss(model, x, y, no_outliers)) == pytest.approx(expected_ce, rel=1e-6)
