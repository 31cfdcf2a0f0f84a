"""The denoising chain of conditional RBMs (rgbench.models.dtm): the forward process and its
coupling, exact conditionals of the reverse chain, sampling contract, determinism, resume,
save/load and errors, on tiny synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_dbn import synthetic_levels

from rgbench.data.preprocess import LevelData
from rgbench.models.dtm import (DTM, DTMConfig, couplings, keep_probabilities, resample, step_keep_probabilities,
                                train_dtm)


def tiny_config(**overrides: object) -> DTMConfig:
    settings = dict(steps=2, rate=1.0, hidden=8, sweeps=2, epochs=1, batch_size=20, lr=0.01, lr_final_factor=0.2,
                    weight_decay=0.0, init_std=0.05, classes=0, smoothing=1.0)
    settings.update(overrides)
    return DTMConfig(**settings)


@pytest.fixture(scope="module")
def tiny_data() -> LevelData:
    train_x, train_y = synthetic_levels(100, 0)
    val_x, val_y = synthetic_levels(20, 1)
    return LevelData(train_x, train_y, val_x, val_y, val_x[:0], val_y[:0])


def test_forward_schedule_on_the_log_grid() -> None:
    """rate 1 on the log grid keeps a share 1 - i/T of x_0's pixels; the last step's output is
    pure noise, so its coupling is 0; J_i is the kernel's log-odds of keeping a level."""
    np.testing.assert_allclose(keep_probabilities(4, 1.0), [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(step_keep_probabilities(4, 1.0), [0.75, 2 / 3, 0.5, 0.0])
    np.testing.assert_allclose(couplings(4, 1.0), np.log([13.0, 9.0, 5.0, 1.0]))
    k = step_keep_probabilities(3, 0.7)
    same, other = k + (1 - k) / 4, (1 - k) / 4
    np.testing.assert_allclose(couplings(3, 0.7), np.log(same / other))
    np.testing.assert_allclose(keep_probabilities(3, 0.7), (1 - np.arange(4) / 3) ** 0.7)


def test_resample_keeps_the_given_share() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200_000, dtype=torch.uint8)
    assert torch.equal(resample(x, 1.0, g), x)
    noise = resample(x, 0.0, g)
    np.testing.assert_allclose(np.bincount(noise.numpy(), minlength=4) / len(x), 0.25, atol=0.005)
    kept = resample(x, 0.6, g)
    assert float((kept == 0).float().mean()) == pytest.approx(0.6 + 0.4 / 4, abs=0.005)


def test_reverse_step_of_a_flat_rbm_inverts_the_kernel() -> None:
    """With zero weights and biases the RBM is uniform, so p(x_{i-1} | x_i) is the forward
    kernel itself: a pixel keeps x_i's level with probability k_i + (1 - k_i) / 4, and each
    other level has (1 - k_i) / 4, whatever the level (the reference-level form included)."""
    model = DTM(tiny_config(steps=3, rate=1.0))
    with torch.no_grad():
        for rbm in model.rbms:
            for p in rbm.parameters():
                p.zero_()
    g = torch.Generator().manual_seed(1)
    x_cond = (torch.arange(4000 * 784) % 4).to(torch.uint8).view(4000, 28, 28)
    for step, keep in zip((1, 2, 3), step_keep_probabilities(3, 1.0)):
        out = model.denoise(step, x_cond, None, 1, g)
        same = float((out == x_cond).float().mean())
        assert same == pytest.approx(keep + (1 - keep) / 4, abs=0.003)
        # a pixel conditioned on level 0 moves to level 2 with the "other" probability
        moved = float((out[x_cond == 0] == 2).float().mean())
        assert moved == pytest.approx((1 - keep) / 4, abs=0.004)


def test_samples_are_level_images_after_every_step(tiny_data: LevelData) -> None:
    model = train_dtm(tiny_config(steps=3), tiny_data, seed=0)
    snaps = model.sample(7, None, 2, torch.Generator().manual_seed(3))
    assert sorted(snaps) == [2, 4, 6]
    for images in snaps.values():
        assert images.shape == (7, 28, 28) and images.dtype == np.uint8 and images.max() <= 3
    again = model.sample(7, None, 2, torch.Generator().manual_seed(3))
    for key in snaps:
        np.testing.assert_array_equal(snaps[key], again[key])


def test_training_moves_samples_toward_the_data(tiny_data: LevelData) -> None:
    """The synthetic images are ~85% level 0; uniform noise is 25%. A trained chain's samples
    are much closer to the data's background share than its noise start."""
    model = train_dtm(tiny_config(epochs=8, hidden=16, sweeps=5, lr=0.03), tiny_data, seed=0)
    final = model.sample(200, None, 5, torch.Generator().manual_seed(0))[10]
    data_share = float((tiny_data.train_x == 0).mean())
    assert data_share > 0.8
    assert abs(float((final == 0).mean()) - data_share) < 0.1


def test_fixed_seed_is_bit_identical_and_labels_are_checked(tiny_data: LevelData) -> None:
    cfg = tiny_config(classes=10)
    a, b = train_dtm(cfg, tiny_data, seed=2), train_dtm(cfg, tiny_data, seed=2)
    for name, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], value, rtol=0, atol=0)
    assert [h["step"] for h in a.record["history"]] == [2, 1]
    assert a.parameter_count() == 2 * (784 * 3 * 8 + 784 * 3 + 8 + 10 * 8 + 10)
    labels = np.arange(5) % 10
    snaps = a.sample(5, labels, 1, torch.Generator().manual_seed(0))
    assert snaps[2].shape == (5, 28, 28)
    with pytest.raises(ValueError, match="needs 5 labels"):
        a.sample(5, None, 1)
    with pytest.raises(ValueError, match="labels must lie"):
        a.sample(2, [0, 10], 1)
    free = train_dtm(tiny_config(), tiny_data, seed=2)
    with pytest.raises(ValueError, match="takes no labels"):
        free.sample(2, [0, 1], 1)
    with pytest.raises(ValueError, match="step must lie"):
        free.denoise(3, torch.zeros(1, 28, 28, dtype=torch.uint8), None, 1)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(sweeps=0), dict(rate=0.0), dict(lr_final_factor=0.0),
                                 dict(classes=3)])
def test_bad_config_raises(bad) -> None:
    with pytest.raises(ValueError):
        tiny_config(**bad)


def test_too_few_images_for_a_batch_raise(tiny_data: LevelData) -> None:
    with pytest.raises(ValueError, match="make no batch of 1000"):
        train_dtm(tiny_config(batch_size=1000), tiny_data, seed=0)


def test_save_load_roundtrip(tiny_data: LevelData, tmp_path) -> None:
    model = train_dtm(tiny_config(), tiny_data, seed=1)
    model.save(tmp_path / "m.pt", note="kept")
    loaded, payload = DTM.load_payload(tmp_path / "m.pt")
    assert payload["note"] == "kept" and loaded.record == model.record
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(model.sample(4, None, 2, g1)[4], loaded.sample(4, None, 2, g2)[4])
    torch.save({"kind": "dbn", "format": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DTM file"):
        DTM.load_payload(tmp_path / "other.pt")


def test_training_resumes_after_the_last_finished_step(tiny_data: LevelData, tmp_path, monkeypatch) -> None:
    """A run killed in its second step resumes from the checkpoint with the weights of an
    uninterrupted run; the checkpoint is removed at the end."""
    import rgbench.models.dtm as dtm_module

    cfg = tiny_config(steps=3)
    whole = train_dtm(cfg, tiny_data, seed=4)
    checkpoint = tmp_path / "checkpoint.pt"
    original = dtm_module._train_step

    def killed_at_step_two(model, step, *args, **kwargs):
        if step == 2:
            raise KeyboardInterrupt
        return original(model, step, *args, **kwargs)

    monkeypatch.setattr(dtm_module, "_train_step", killed_at_step_two)
    with pytest.raises(KeyboardInterrupt):
        train_dtm(cfg, tiny_data, seed=4, checkpoint_path=checkpoint)
    assert torch.load(checkpoint, weights_only=False)["steps_done"] == [3]
    monkeypatch.setattr(dtm_module, "_train_step", original)
    messages = []
    resumed = train_dtm(cfg, tiny_data, seed=4, log=messages.append, checkpoint_path=checkpoint)
    assert messages[0].startswith("resumed after steps [3]")
    assert not any(m.startswith("step 3") for m in messages[1:])
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert not checkpoint.exists()
    assert math.isfinite(resumed.record["train_cpu_seconds"])


# --- the potts_ebm jobs of the DTM (rgbench.experiments.potts_ebm_dtm) -------------------------


def test_dtm_jobs_train_and_score_both_rows(tmp_path) -> None:
    """Each DTM row trains its own chain (dtm_cond's RBMs have the label units) and is
    scored at the trained sweeps per step (snapshots after every step) and, from fresh
    noise, at long_sweeps_factor times them, with no likelihood claimed; reproducible."""
    import json

    from helpers import default_config, level_files

    from rgbench.experiments import potts_ebm
    from rgbench.io import load_npz

    mnist4, reference, stats = level_files(tmp_path)
    section = default_config()["potts_ebm"]
    dtm = {**section["dtm"], "steps": 3, "hidden": 8, "sweeps": 2, "epochs": 1, "batch_size": 20}
    analysis = {"seed": 0, "samples": 30, "long_sweeps_factor": 3, "ceiling_images": 40, "memorisation_images": 20}
    rows = {}
    for model in ("dtm_cond", "dtm", "dtm_cond"):
        run = {"model": model, "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0, "training": dtm}
        trained = tmp_path / f"model-{model}_seed-0"
        if not (trained / "model.pt").exists():
            payload = potts_ebm.train_job(run, str(mnist4), str(trained / "model.pt"), str(trained / "epochs.npz"),
                                          device="cpu")
            assert payload["kind"] == "dtm" and payload["n_train"] == 100 and payload["n_val"] == 20
            assert payload["config"]["classes"] == (10 if model == "dtm_cond" else 0)
            assert payload["steps_run"] == 3 * (100 // 20)
            assert load_npz(trained / "epochs.npz")["step"].tolist() == [3, 2, 1]
        out = tmp_path / f"{model}-{len(rows)}"
        potts_ebm.evaluate_job(run, analysis, str(mnist4), str(trained / "model.pt"), str(reference), str(stats),
                               str(out / "metrics.json"), str(out / "samples.npz"), run_id=f"model-{model}_seed-0",
                               device="cpu")
        rows[f"{model}-{len(rows)}"] = (json.loads((out / "metrics.json").read_text()), load_npz(out / "samples.npz"))
    (cond, cond_samples), (free, free_samples), (again, again_samples) = rows.values()
    for record, samples in ((cond, cond_samples), (free, free_samples)):
        m = record["metrics"]
        assert m["test_nll_nats"] is None and m["likelihood_method"] == "none"
        assert m["sample_sweeps"] == 6 and m["long_sample_sweeps"] == 18 and m["n_samples"] == 30
        assert m["dtm_steps"] == 3 and m["sweeps_per_step"] == 2
        assert 0 <= m["long_recognisable_fraction"] <= 1 and m["cpu_seconds_per_1000_samples"] > 0
        assert samples["checkpoints"].tolist() == [2, 4, 6, 18]  # after each step, then the long pass's end
        assert samples["samples"].shape == (30, 28, 28) and samples["samples"].max() <= 3
        assert record["params"]["hidden"] == 8 and record["params"]["pcd_sweeps"] == 2
    assert cond["provenance"]["n_params"] == 3 * (784 * 3 * 8 + 784 * 3 + 8 + 10 * 8 + 10)
    assert free["provenance"]["n_params"] == 3 * (784 * 3 * 8 + 784 * 3 + 8)
    assert cond_samples["labels"].tolist() == [i % 10 for i in range(30)] and len(free_samples["labels"]) == 0
    assert "long_conditional_recognition" in cond["metrics"] and "conditional_recognition" not in free["metrics"]
    assert cond["metrics"]["baseline"] == "class_mixture" and free["metrics"]["baseline"] == "independent"
    np.testing.assert_array_equal(cond_samples["samples"], again_samples["samples"])


def test_dtm_has_no_probe_yet(tmp_path) -> None:
    from helpers import default_config, level_files
    from test_probe import probe_block

    from rgbench.experiments import potts_ebm

    mnist4, _, _ = level_files(tmp_path)
    run = {"model": "dtm", "seed": 0, "train_limit": 0, "test_limit": 0, "smoothing": 1.0,
           "training": default_config()["potts_ebm"]["dtm"]}
    with pytest.raises(ValueError, match="no probe"):
        potts_ebm.train_job({**run, **probe_block("potts_ebm_train", "cpu")}, str(mnist4), str(tmp_path / "m.pt"),
                            str(tmp_path / "e.npz"), device="cpu")


@pytest.mark.parametrize("preset", [None, "config/smoke.yaml", "config/dbn.yaml", "config/dtm.yaml"])
def test_every_potts_hand_off_builds_its_jobs_config(repo_root, preset) -> None:
    """potts_ebm_functions.smk hands each row only the keys its jobs read: the annealed rows'
    AnalysisConfig / ThrmlConfig, the DBN's and the DTM's sampling configs (strict builds, so a
    key added, dropped or misspelt on either side fails here), and each trained row's block."""
    import yaml
    from helpers import default_config, merged

    from rgbench.config import build
    from rgbench.experiments.potts_ebm import AnalysisConfig, PottsRunConfig, ThrmlConfig
    from rgbench.experiments.potts_ebm_dbn import DBNSamplingConfig
    from rgbench.experiments.potts_ebm_dtm import DTMSamplingConfig, dtm_config

    config = default_config()
    if preset:
        config = merged(config, yaml.safe_load((repo_root / preset).read_text()))
    names = {"config": config}
    for smk in ("common.smk", "potts_ebm_functions.smk"):
        path = repo_root / "workflow" / "rules" / smk
        exec(compile(path.read_text(), str(path), "exec"), names)
    sampling = {"dbn": DBNSamplingConfig, "dtm": DTMSamplingConfig}
    seen = set()
    for run in names["POTTS_RUNS"].values():
        family = names["POTTS_TRAINING"].get(run["model"])
        build(PottsRunConfig, run)
        build(sampling.get(family, AnalysisConfig), names["potts_analysis"](run))
        if run["model"] in config["potts_ebm"]["thrml"]["models"]:
            build(sampling.get(family, ThrmlConfig), names["potts_thrml_settings"](run))
        if family == "dtm":
            assert dtm_config(run["model"], run["training"], run["smoothing"]).classes == (
                10 if run["model"] == "dtm_cond" else 0)
        seen.add(family)
    expected = {"dtm"} if preset == "config/dtm.yaml" else {"dbn"} if preset == "config/dbn.yaml" else set()
    assert expected <= seen
