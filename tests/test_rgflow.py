"""RG-Flow: bijection, exact log-determinant, MERA geometry, training resume, CelebA path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rgbench.models.rgflow import (Coupling, RGFlow, RGFlowConfig, bits_per_dim, block_pixels, count_parameters,
                                   latent_levels, to_logit)

SMALL = dict(couplings=[2], hidden=16, res_blocks=2, mlp_layers=1, prior="laplace")


@pytest.fixture(autouse=True)
def one_thread():
    """The machine is shared; tiny tensors gain nothing from a second thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomised(config: RGFlowConfig, seed: int = 0, std: float = 0.1) -> RGFlow:
    """A flow whose zero-initialised output scales are set random, so it is not the identity.

    std 0.1 gives latents of a trained model's size (|z| ~ 6); much larger scales make
    float32 inversion lose precision through 32 chained exp(s) factors.
    """
    torch.manual_seed(seed)
    model = RGFlow(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.normal_(0.0, std)
    return model


def test_flow_starts_as_identity() -> None:
    model = RGFlow(RGFlowConfig(**SMALL))
    x = torch.randn(2, 3, 32, 32)
    z, ldj = model(x)
    assert torch.equal(z, x)
    assert torch.all(ldj == 0)


@pytest.mark.parametrize("res_blocks,prior", [(1, "laplace"), (2, "gaussian")])
def test_round_trip_and_inverse_log_det(res_blocks: int, prior: str) -> None:
    model = randomised(RGFlowConfig(**{**SMALL, "res_blocks": res_blocks, "prior": prior}))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        z, ldj = model(x)
        x_back, inv_ldj = model.inverse(z)
    assert not torch.allclose(z, x, atol=1e-2)  # the flow does something
    assert (x_back - x).abs().max() < 1e-4
    assert torch.allclose(ldj, -inv_ldj, atol=1e-3)


def test_log_det_matches_autograd_jacobian() -> None:
    # A tiny image: 8x8 with 1 channel and kernel 4 gives two levels (4 sublayers).
    config = RGFlowConfig(image_size=8, channels=1, kernel=4, couplings=[1, 2], hidden=8, res_blocks=2,
                          mlp_layers=2, prior="laplace")
    model = randomised(config, seed=3, std=0.5).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: model(v.view(1, 1, 8, 8))[0].reshape(-1), x.reshape(-1))
    expected = torch.linalg.slogdet(jac)[1]
    with torch.no_grad():
        _, ldj = model(x)
    assert abs(float(ldj[0]) - float(expected)) < 1e-8
    assert abs(float(expected)) > 0.1  # not trivially zero


def test_latent_positions_per_level() -> None:
    levels = latent_levels(32, 4)
    assert np.bincount(levels.ravel()).tolist() == [768, 192, 48, 16]
    rows, cols = np.indices((32, 32))
    for h in range(4):
        on_grid = (rows % 2**h == 0) & (cols % 2**h == 0)
        next_grid = (rows % 2 ** (h + 1) == 0) & (cols % 2 ** (h + 1) == 0)
        expected = on_grid & ~next_grid if h < 3 else on_grid
        assert np.array_equal(levels == h, expected), h
        for shifted in (False, True):  # each sublayer of level h touches only its grid, each pixel once
            touched = block_pixels(32, 4, h, shifted).ravel()
            assert len(np.unique(touched)) == len(touched) == on_grid.sum()
            assert np.all(on_grid.ravel()[touched])
        assert block_pixels(32, 4, h, False).shape[0] == [64, 16, 4, 1][h]


def test_latents_are_final_after_their_level() -> None:
    """A level-h latent is never changed by a later level, and level h changes only its grid."""
    model = randomised(RGFlowConfig(**SMALL))
    levels = torch.as_tensor(latent_levels())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z, _ = model(x)
        previous = x
        for h in range(4):
            partial, _ = model(x, stop_level=h)
            mine = levels == h
            assert torch.equal(partial[..., mine], z[..., mine])
            rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
            off_grid = ~((rows % 2**h == 0) & (cols % 2**h == 0))
            assert torch.equal(partial[..., off_grid], previous[..., off_grid])
            assert not torch.equal(partial[..., mine], previous[..., mine])
            previous = partial


def test_parameter_counts_and_config_errors() -> None:
    """Counts equal the official build_mera's for the same settings (counted outside the
    project): the default preset's model, the speed benchmark's 948k configuration (the
    official code's default nmlp = 2), the seed's MSDS model (nlayers 4 on every level)."""
    small = dict(couplings=[2], hidden=128, res_blocks=1, mlp_layers=1, prior="laplace")
    assert count_parameters(RGFlow(RGFlowConfig(**small))) == 411_648
    assert count_parameters(RGFlow(RGFlowConfig(**{**small, "mlp_layers": 2}))) == 948_224
    # One RG layer of the seed's MSDS model: 4 couplings of hidden 512, 4 residual blocks of 2 layers.
    assert 4 * count_parameters(Coupling(48, hidden=512, res_blocks=4, mlp_layers=2)) == 10_064_768
    assert RGFlowConfig(**{**small, "couplings": [8, 6, 4, 2]}).couplings == (8, 8, 6, 6, 4, 4, 2, 2)
    with pytest.raises(ValueError, match="prior"):
        RGFlowConfig(**{**small, "prior": "cauchy"})
    with pytest.raises(ValueError, match="couplings"):
        RGFlowConfig(**{**small, "couplings": [1, 2, 3]})


def test_bpd_of_identity_flow_on_known_input() -> None:
    # Identity flow, Gaussian prior: NLL = -log N(y) - ldj_logit, computable by hand. The
    # pipeline's NLL (image_nll) draws its dequantisation noise from a generator seeded
    # with ``seed``: the same noise is drawn here.
    from rgbench.experiments.rgflow import image_nll

    model = RGFlow(RGFlowConfig(**{**SMALL, "prior": "gaussian"}))
    images = np.full((1, 32, 32, 3), 128, dtype=np.uint8)
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = (128 + noise) / 256
    y, ldj = to_logit(x)
    expected = float((0.5 * y**2 + 0.5 * math.log(2 * math.pi)).sum() - ldj.sum())
    nll = image_nll(model, images, batch_size=1, device=torch.device("cpu"), seed=0)
    assert nll.shape == (1,) and abs(float(nll[0]) - expected) < 1e-3
    assert bits_per_dim(float(nll.mean()), 3072) == pytest.approx((expected / 3072 + math.log(256)) / math.log(2),
                                                                  rel=1e-6)


def _config(**train) -> dict:
    return {"dataset": "msds1", "prior": "laplace", "label": "test",
            "model": {"couplings": [1], "hidden": 8, "res_blocks": 1, "mlp_layers": 1},
            "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "micro_batch_size": None, "lr": 1e-3,
                      "weight_decay": 0.0, "grad_clip": 1.0, "seed": 0, "val_images": 4, "split_seed": 3,
                      "samples_per_epoch": 2, **train}}


def _fake_msds(path, n_train: int = 20, n_test: int = 6) -> None:
    from rgbench.io import save_npz_atomic

    rng = np.random.default_rng(0)
    save_npz_atomic(path, train_images=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                    test_images=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8))


def test_training_resume_is_exact(tmp_path) -> None:
    from rgbench.experiments.rgflow import train_job

    _fake_msds(tmp_path / "d.npz")
    config = _config()
    for name in ("full", "half", "resumed"):
        (tmp_path / name).mkdir()
    train_job(config, tmp_path / "d.npz", tmp_path / "full" / "model.pt", device="cpu")
    one = {**config, "train": {**config["train"], "epochs": 1}}
    train_job(one, tmp_path / "d.npz", tmp_path / "half" / "model.pt", device="cpu")
    # The same fingerprint is required to resume: give the epoch-1 checkpoint the full run's.
    ck = torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=False)
    ck["fingerprint"] = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["fingerprint"]
    torch.save(ck, tmp_path / "resumed" / "checkpoint.pt")
    train_job(config, tmp_path / "d.npz", tmp_path / "resumed" / "model.pt", device="cpu")
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]
    assert full["history"][0]["extra"]["samples"].shape == (2, 32, 32, 3)


def test_micro_batches_give_the_whole_batch_step(tmp_path) -> None:
    """Gradients accumulated over pieces of 3 of a batch of 8 (the dequantisation noise drawn
    in the same order) train the same weights as the whole batch, up to float rounding."""
    from rgbench.experiments.rgflow import train_job

    _fake_msds(tmp_path / "d.npz")
    weights = []
    for micro in (None, 3):
        path = tmp_path / f"micro-{micro}" / "model.pt"
        path.parent.mkdir()
        train_job(_config(epochs=1, steps_per_epoch=2, micro_batch_size=micro), tmp_path / "d.npz", path,
                  device="cpu")
        weights.append(torch.load(path, weights_only=False)["model"])
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=0, atol=1e-5)


def test_a_probe_trains_two_steps_and_evaluates_a_few_batches(tmp_path) -> None:
    import json

    from rgbench.experiments.rgflow import evaluate_job, train_job

    _fake_msds(tmp_path / "d.npz", n_test=12)
    probe = {"steps": 2, "eval_batches": 1, "max_micro_batch": 2, "rule": "rgflow_train", "family": "train",
             "benchmark": "b.tsv", "represents": 4}
    config = _config(epochs=3, steps_per_epoch=5, micro_batch_size=4)
    train_job({**config, "probe": probe}, tmp_path / "d.npz", tmp_path / "model.pt", device="cpu")
    state = torch.load(tmp_path / "model.pt", weights_only=False)
    assert state["steps"] == 2 and len(state["history"]) == 2
    (fit,) = json.loads((tmp_path / "probe_rgflow_train.json").read_text())["fits"]
    assert fit["steps_planned"] == 15 and fit["micro_batch_size"] == 4 and fit["probe_micro_batch_size"] == 2
    assert fit["resumed"] and fit["ops_per_step"] == 2 * fit["ops_per_piece"] + fit["ops_rest"]
    eval_config = {**config, "eval": {"test_images": None, "batch_size": 4, "samples": 2, "rf_images": 2,
                                      "mix_pairs": 1}, "probe": {**probe, "rule": "rgflow_evaluate"}}
    evaluate_job(eval_config, tmp_path / "model.pt", tmp_path / "d.npz", tmp_path / "metrics.json",
                 tmp_path / "arrays.npz", run_id="r", device="cpu")
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["provenance"]["probe"] is True and record["provenance"]["n_test"] == 4
    blocks = json.loads((tmp_path / "probe_rgflow_evaluate.json").read_text())["blocks"]
    assert blocks["test_bpd"]["scale"] == 3 and blocks["receptive_fields"]["scale"] == 2
    assert blocks["test_bpd"]["flops"] > 0


def test_validation_comes_from_training_images_and_test_is_whole(tmp_path, monkeypatch) -> None:
    """Training batches never contain a validation image; the per-epoch BPD is taken on the
    validation split; the test BPD covers every test image, once, with its standard error."""
    import json

    from rgbench.experiments import rgflow as experiment

    _fake_msds(tmp_path / "d.npz")
    splits = experiment.load_splits(tmp_path / "d.npz", val_images=4, split_seed=3)
    assert len(splits.val_index) == 4 and len(splits.train_index) == 16 and len(splits.test) == 6
    assert not set(splits.val_index.tolist()) & set(splits.train_index.tolist())
    val_bytes = {image.tobytes() for image in splits.val}
    seen, bpd_calls = [], []
    original_fit, original_bpd = experiment.fit, experiment.evaluate_bpd

    def spy_fit(model, optimizer, make_batches, loss_fn, *args, **kwargs):
        def spy_loss(batch):
            seen.extend(image.tobytes() for image in batch.numpy())
            return loss_fn(batch)
        return original_fit(model, optimizer, make_batches, spy_loss, *args, **kwargs)

    def spy_bpd(model, images, *args):
        bpd_calls.append(images.copy())
        return original_bpd(model, images, *args)

    monkeypatch.setattr(experiment, "fit", spy_fit)
    monkeypatch.setattr(experiment, "evaluate_bpd", spy_bpd)
    config = _config(epochs=2, steps_per_epoch=3)
    experiment.train_job(config, tmp_path / "d.npz", tmp_path / "model.pt", device="cpu")
    assert len(seen) == 2 * 3 * 8 and not set(seen) & val_bytes
    assert len(bpd_calls) == 2 and all(np.array_equal(images, splits.val) for images in bpd_calls)
    eval_config = {**config, "eval": {"test_images": None, "batch_size": 4, "samples": 2, "rf_images": 2,
                                      "mix_pairs": 1}}
    experiment.evaluate_job(eval_config, tmp_path / "model.pt", tmp_path / "d.npz", tmp_path / "metrics.json",
                            tmp_path / "arrays.npz", run_id="r", device="cpu")
    assert np.array_equal(bpd_calls[-1], splits.test) and len(bpd_calls) == 3
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["provenance"]["n_train"] == 16 and record["provenance"]["n_val"] == 4
    assert record["provenance"]["n_test"] == 6 and record["metrics"]["test_images"] == 6
    metrics = record["metrics"]
    assert metrics["test_bpd_se"] > 0 and metrics["val_bpd"] == record["extra"]["val_bpd_per_epoch"][-1]
    assert 0 < metrics["test_bpd"] < 20 and metrics["steps"] == 6
    # bad hand-offs fail naming the key
    with pytest.raises(Exception, match="split_seed"):
        experiment.train_job({**config, "train": {k: v for k, v in config["train"].items() if k != "split_seed"}},
                             tmp_path / "d.npz", tmp_path / "x.pt", device="cpu")
    with pytest.raises(ValueError, match="val_images"):
        experiment.load_splits(tmp_path / "d.npz", val_images=20, split_seed=0)


def test_run_settings_carry_no_defaults_for_config_keys() -> None:
    """config.yaml is the one home of the defaults: no dataclass field behind a config key
    of the rgflow section has a default of its own."""
    import dataclasses

    from rgbench.config import default_config
    from rgbench.experiments.rgflow import EvalSettings, ModelSettings, TrainRun, TrainSettings

    section = default_config()["rgflow"]
    for cls, keys in ((ModelSettings, section["model"]), (TrainSettings, section["train"]),
                      (EvalSettings, section["eval"]), (TrainRun, {"label", "model", "train", "dataset", "prior"}),
                      (RGFlowConfig, {*section["model"], "prior"})):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(keys) <= set(fields), cls
        assert [k for k in keys if fields[k].default is not dataclasses.MISSING] == [], cls


def _fake_celeba(folder, n: int, partition: bool, suffix: str = ".png") -> list[str]:
    """Aligned-CelebA look-alikes, 178 x 218: noisy border, a solid 148 x 148 centre whose
    left half differs (to see the crop and the flip). Partition file as distributed:
    the last two test (2), the two before them validation (1), the rest train (0)."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines, names = [], []
    for i in range(n):
        image = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        image[35:183, 15:163] = [10 * i, 200, 255 - 10 * i]
        image[35:183, 15:89, 1] = 40
        name = f"{i + 1:06d}{suffix}"
        Image.fromarray(image).save(folder / name, **({"quality": 95} if suffix == ".jpg" else {}))
        lines.append(f"{name} {2 if i >= n - 2 else 1 if i >= n - 4 else 0}")
        names.append(name)
    if partition:
        (folder.parent / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return names


def test_celeba_cache_from_fake_images(tmp_path) -> None:
    from rgbench.data.celeba import build_cache, random_flip
    from rgbench.io import load_npz

    _fake_celeba(tmp_path / "celeba" / "img_align_celeba", 8, partition=True)
    counts = build_cache(tmp_path / "celeba", tmp_path / "c.npz")
    data = load_npz(tmp_path / "c.npz")
    assert counts == {"train": 4, "test": 2}  # partition 1 is not used, as in the RG-Flow code
    assert data["train_images"].shape == (4, 32, 32, 3) and data["train_images"].dtype == np.uint8
    assert list(data["test_names"]) == ["000007.png", "000008.png"]
    # The centre crop keeps only the solid square: left half G = 40, right half G = 200.
    first = data["train_images"][0].astype(int)
    assert np.abs(first[:, 2:14, 1] - 40).max() <= 1 and np.abs(first[:, 18:30, 1] - 200).max() <= 1
    assert np.abs(first[..., 2] - 255).max() <= 1
    flipped = random_flip(torch.as_tensor(data["train_images"]).repeat(8, 1, 1, 1),
                          generator=torch.Generator().manual_seed(0))
    is_flipped = [torch.equal(f, torch.as_tensor(first[:, ::-1].copy()).to(torch.uint8)) for f in flipped[::4]]
    assert any(is_flipped) and not all(is_flipped)


def test_celeba_preprocessing_is_the_rgflow_transform(tmp_path) -> None:
    """The cache equals torchvision's CenterCrop(148) + Resize(32) on the decoded JPEG (the
    RG-Flow celeba32 transform without its random flip), i.e. the box (15, 35, 163, 183)."""
    from PIL import Image
    from torchvision import transforms

    from rgbench.data.celeba import preprocess

    folder = tmp_path / "img_align_celeba"
    names = _fake_celeba(folder, 3, partition=False, suffix=".jpg")
    reference = transforms.Compose([transforms.CenterCrop(148), transforms.Resize(32)])
    for name in names:
        with Image.open(folder / name) as image:
            assert image.size == (178, 218)
            expected = np.asarray(reference(image.convert("RGB")))
            boxed = np.asarray(image.convert("RGB").crop((15, 35, 163, 183)).resize((32, 32), Image.BILINEAR))
        assert np.array_equal(preprocess(folder / name), expected)
        assert np.array_equal(expected, boxed)


def test_celeba_without_partition_and_bad_input(tmp_path) -> None:
    from rgbench.data.celeba import build_cache

    _fake_celeba(tmp_path / "imgs", 10, partition=False)
    assert build_cache(tmp_path / "imgs", tmp_path / "c.npz") == {"train": 9, "test": 1}
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_cache(tmp_path / "missing", tmp_path / "x.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .jpg/.png"):
        build_cache(tmp_path / "empty", tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.slow
def test_celeba_from_a_user_directory_runs_through_the_dag(tmp_path) -> None:
    """A user with the real data gets a run: a small directory in the distributed layout
    (celeba/img_align_celeba/*.jpg at 178 x 218 and celeba/list_eval_partition.txt) goes
    through rgflow_celeba, training and evaluation to a metrics.json."""
    import json
    import subprocess
    import sys

    import yaml
    from helpers import copy_workflow

    work = copy_workflow(tmp_path)
    _fake_celeba(tmp_path / "user" / "celeba" / "img_align_celeba", 24, partition=True, suffix=".jpg")
    overlay = {"rgflow": {"datasets": [], "celeba": {"dir": str(tmp_path / "user" / "celeba")},
                          "train": {"batch_size": 4, "val_images": 4}}}
    (work / "celeba.yaml").write_text(yaml.safe_dump(overlay))
    run_dir = "results/runs/rgflow/dataset-celeba_prior-laplace"
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", f"{run_dir}/metrics.json",
                             "results/tables/rgflow.csv", "--configfile", "config/smoke.yaml", "celeba.yaml"],
                            cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((work / run_dir / "metrics.json").read_text())
    assert record["params"]["dataset"] == "celeba"
    # 20 partition-0 images, 4 held out for validation; the 2 partition-2 images are the test set
    assert (record["provenance"]["n_train"], record["provenance"]["n_val"], record["provenance"]["n_test"]) == (16, 4, 2)
    assert np.isfinite(record["metrics"]["test_bpd"]) and not record["metrics"]["diverged"]
    cache = np.load(work / "results/data/celeba/celeba32.npz")
    assert cache["train_images"].shape == (20, 32, 32, 3)


def test_receptive_fields_grow_with_level_and_mixing_uses_levels() -> None:
    from rgbench.experiments.rgflow import mix_latents, receptive_fields, temperature_map

    # 16x16, 1 channel: three levels; the top level's latents see the whole image.
    model = randomised(RGFlowConfig(image_size=16, channels=1, couplings=[1], hidden=8, res_blocks=1,
                                    mlp_layers=1, prior="laplace"), std=0.3)
    rf, positions = receptive_fields(model, torch.randn(2, 1, 16, 16))
    support = [int((rf[level] > 1e-3).sum()) for level in range(3)]
    # A level-0 latent reaches x through one shifted and the unshifted 4x4 blocks: <= 8x8 pixels.
    assert support[0] <= 64 and support == sorted(support) and support[2] > 128
    levels = latent_levels(16, 4)
    assert [levels[r, c] for r, c in positions] == [0, 1, 2]
    assert all(rf[level][r, c] > 0 for level, (r, c) in enumerate(positions))
    za, zb = torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)
    mixed = mix_latents(model, za, zb, cut=1)
    assert torch.equal(mixed[0, 0] == 0, torch.as_tensor(levels >= 1))
    t = temperature_map(model)
    assert t[0, 0] == 0.8 and t[0, 1] == 0.2 and t[1, 1] == 0.2 and t[2, 4] == 0.8
