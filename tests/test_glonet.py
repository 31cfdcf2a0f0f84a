"""GloNet depth study: model maths, training behaviour (divergence, reproducibility,
resume) and the job's outputs, on tiny nets and the shipped MNIST subset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import default_config, merged
from rgbench.config import ConfigError, build
from rgbench.experiments.glonet import (
    Data,
    GloNetRunConfig,
    best_exit_k,
    layer_statistics,
    layers_for_fraction,
    train_job,
    train,
)
from rgbench.models.glonet import (
    DepthNet,
    DepthNetConfig,
    count_linear_layers,
    train_flops_per_sample,
    weight_one_norms,
)

REQUIRED_COLUMNS = ["model", "depth", "features", "epochs", "seed", "test_accuracy", "train_seconds", "diverged"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_data(n_train: int = 192, n_test: int = 64, seed: int = 0) -> Data:
    """Class c lights its own block of 78 pixels, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = 0.3 * torch.rand(n, 784, generator=g)
        for c in range(10):
            x[y == c, 78 * c:78 * (c + 1)] += 0.7
        return x, y

    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    return Data(train_x, train_y, test_x, test_y)


def hand_set_net(model: str) -> DepthNet:
    """depth 4 (3 hidden layers), 2 inputs, 2 features, 1 output, weights set by hand."""
    net = DepthNet(DepthNetConfig(model=model, depth=4, features=2, in_features=2, classes=1))
    with torch.no_grad():
        net.hidden[0].weight.copy_(torch.eye(2))
        net.hidden[0].bias.zero_()
        net.hidden[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
        net.hidden[1].bias.zero_()
        net.hidden[2].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))
        net.hidden[2].bias.copy_(torch.tensor([0.0, 1.0]))
        net.head.weight.copy_(torch.tensor([[1.0, 1.0]]))
        net.head.bias.copy_(torch.tensor([0.5]))
    return net


# --- model ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["GloNet", "MLP", "ResMLP"])
@pytest.mark.parametrize("depth", [2, 3, 7])
def test_shapes_and_depth_counting(model: str, depth: int) -> None:
    config = DepthNetConfig(model=model, depth=depth, features=16)
    net = DepthNet(config)
    x = torch.rand(5, 1, 28, 28)
    assert net(x).shape == (5, 10)
    outputs = net.layer_outputs(x)
    assert len(outputs) == depth - 1 == config.hidden_layers
    assert all(h.shape == (5, 16) for h in outputs)
    assert count_linear_layers(net) == depth
    expected_params = (784 * 16 + 16) + (depth - 2) * (16 * 16 + 16) + (16 * 10 + 10)
    assert sum(p.numel() for p in net.parameters()) == expected_params
    assert train_flops_per_sample(config) == 4 * 784 * 16 + 6 * ((depth - 2) * 256 + 160)


def test_init_is_kaiming_normal_with_zero_bias() -> None:
    net = DepthNet(DepthNetConfig(model="MLP", depth=3, features=512))
    torch.testing.assert_close(net.hidden[1].bias, torch.zeros(512))
    std = net.hidden[1].weight.std().item()
    assert abs(std - math.sqrt(2 / 512)) < 0.05 * math.sqrt(2 / 512)


def test_glonet_sum_mlp_and_resmlp_on_hand_set_weights() -> None:
    x = torch.tensor([[1.0, 2.0]])
    # h1 = relu(x) = [1, 2]; h2 = relu([2, -2]) = [2, 0]
    # GloNet: h3 = relu(W3 h2 + b3) = relu([2, -1]) = [2, 0]; sum = [5, 2] -> 7.5
    # MLP: head(h3) = 2 + 0.5 = 2.5
    # ResMLP: s2 = h1 + h2 = [3, 2]; h3 = relu([5, -2]) = [5, 0]; s3 = [8, 2] -> 10.5
    assert hand_set_net("GloNet")(x).item() == 7.5
    assert hand_set_net("MLP")(x).item() == 2.5
    assert hand_set_net("ResMLP")(x).item() == 10.5
    # early exit: head on the sum of the first k layers: [1,2] -> 3.5, [3,2] -> 5.5, [5,2] -> 7.5
    exits = hand_set_net("GloNet").early_exit_logits(x)
    assert exits.shape == (3, 1, 1)
    assert exits.flatten().tolist() == [3.5, 5.5, 7.5]
    with pytest.raises(ValueError, match="MLP"):
        hand_set_net("MLP").early_exit_logits(x)


def test_glonet_and_resmlp_coincide_with_two_hidden_layers() -> None:
    # With two hidden layers both heads read h1 + relu(W2 h1): the same function.
    torch.manual_seed(0)
    glonet = DepthNet(DepthNetConfig(model="GloNet", depth=3, features=8))
    resmlp = DepthNet(DepthNetConfig(model="ResMLP", depth=3, features=8))
    resmlp.load_state_dict(glonet.state_dict())
    x = torch.rand(4, 784)
    torch.testing.assert_close(glonet(x), resmlp(x))


def test_weight_one_norm_is_max_over_output_units() -> None:
    net = hand_set_net("GloNet")
    # rows (output units) of W: [1,0],[0,1] -> 1; [2,0],[0,-1] -> 2; [1,1],[-1,0] -> 2
    assert weight_one_norms(net).tolist() == [1.0, 2.0, 2.0]


def test_bad_configs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="depth"):
        DepthNetConfig(depth=1)
    with pytest.raises(ValueError, match="model"):
        DepthNetConfig(model="ResNet")
    with pytest.raises(ValueError, match="optimizer"):
        small_config(optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr"):
        small_config(lr=0.0)
    with pytest.raises(ConfigError, match="missing value"):
        build(GloNetRunConfig, {"model": "GloNet"})


def test_usage_summaries() -> None:
    assert layers_for_fraction(np.array([0.5, 0.3, 0.15, 0.05]), 0.9) == 3
    assert layers_for_fraction(np.array([np.nan, 1.0]), 0.9) is None
    assert best_exit_k(np.array([0.5, 0.966, 0.97, 0.968])) == 2  # within 0.5 points of the best
    assert best_exit_k(np.full(3, np.nan)) is None


def test_layer_statistics_on_hand_set_net() -> None:
    net = hand_set_net("GloNet")
    x = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    # per-sample L1: layer1 [3, 1] -> 2; layer2 h2=[2,0],[0,0] -> [2, 0] -> 1;
    # layer3 h3 = relu([2,-1]) = [2,0], relu([0,1]) = [0,1] -> [2, 1] -> 1.5
    stats = layer_statistics(net, x, torch.tensor([0, 0]))
    np.testing.assert_allclose(stats["layer_l1"], [2.0, 1.0, 1.5])
    np.testing.assert_allclose(stats["layer_usage"], np.array([2.0, 1.0, 1.5]) / 4.5)
    np.testing.assert_allclose(stats["weight_norm1"], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(stats["early_exit_accuracy"], [1.0, 1.0, 1.0])  # one class: always right


# --- training ------------------------------------------------------------------------

def small_config(**overrides) -> GloNetRunConfig:
    """A run's hand-off as the workflow builds it (config.yaml's glonet section), made small."""
    section = default_config()["glonet"]
    values = {key: section[key] for key in ("features", "epochs", "batch_size", "lr", "optimizer", "momentum",
                                            "train_limit", "test_limit")}
    values.update(grid="main", model="GloNet", depth=4, features=16, epochs=2, batch_size=32, lr=0.01, seed=3)
    values.update(overrides)
    return build(GloNetRunConfig, values)


def test_training_learns_and_records_curves() -> None:
    result = train(small_config(epochs=3), tiny_data())
    assert not result.fit.diverged
    assert result.curves["epoch"] == [1, 2, 3]
    assert result.test_accuracy > 0.9  # chance is 0.1
    assert all(0 <= a <= 1 for a in result.curves["train_accuracy"])


def test_same_seed_same_metrics_other_seed_differs() -> None:
    data = tiny_data()
    first = train(small_config(), data)
    second = train(small_config(), data)
    assert first.curves["train_loss"] == second.curves["train_loss"]
    assert first.curves["test_accuracy"] == second.curves["test_accuracy"]
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    other = train(small_config(seed=4), data)
    assert other.curves["train_loss"] != first.curves["train_loss"]


@pytest.mark.parametrize("model", ["GloNet", "MLP"])
def test_huge_learning_rate_diverges_without_raising(model: str) -> None:
    result = train(small_config(model=model, optimizer="sgd", lr=1e8, momentum=0.0, epochs=3), tiny_data())
    assert result.fit.diverged
    assert len(result.fit.history) < 3 or result.fit.history[-1].diverged
    assert 0.0 <= result.test_accuracy <= 1.0  # the accuracy it had, still a number


def test_resume_after_a_kill_reaches_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rgbench.training as training

    data = tiny_data()
    reference = train(small_config(epochs=3), data)

    real_save = training.save_checkpoint
    calls = {"n": 0}

    class Killed(Exception):
        pass

    def save_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed  # the job dies while epoch 2 is being saved
        real_save(*args, **kwargs)

    checkpoint = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(small_config(epochs=3), data, checkpoint_path=checkpoint)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    assert checkpoint.exists()

    resumed = train(small_config(epochs=3), data, checkpoint_path=checkpoint)
    assert resumed.fit.resumed_from_epoch == 1
    assert resumed.curves["train_loss"] == reference.curves["train_loss"]
    assert resumed.curves["test_accuracy"] == reference.curves["test_accuracy"]
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)
    # another configuration never resumes from this checkpoint
    fresh = train(small_config(epochs=3, lr=0.02), data, checkpoint_path=checkpoint)
    assert fresh.fit.resumed_from_epoch == 0


# --- the job and its figures ---------------------------------------------------------

def test_run_job_outputs_table_and_figures(mnist28: Path, tmp_path: Path) -> None:
    from rgbench.plotting.glonet import figures_job
    from rgbench.results import aggregate_table

    metrics, arrays = [], []
    runs = [("GloNet", 3, {}), ("MLP", 3, {}), ("MLP", 4, {"optimizer": "sgd", "lr": 1e8, "momentum": 0.0})]
    for model, depth, extra in runs:
        run_id = f"model-{model}_depth-{depth}_seed-0"
        run_dir = tmp_path / "runs" / run_id
        config = small_config(model=model, depth=depth, features=16, epochs=1, batch_size=128,
                              train_limit=400, test_limit=200, seed=0, **extra)
        record = train_job(config, mnist28, run_dir / "metrics.json", run_dir / "arrays.npz", run_id, device="cpu")
        assert not (run_dir / "checkpoint.pt").exists()
        metrics.append(run_dir / "metrics.json")
        arrays.append(run_dir / "arrays.npz")
        assert record["provenance"]["n_train"] == 400 and record["provenance"]["n_test"] == 200
    on_disk = json.loads(metrics[0].read_text())
    assert on_disk["extra"]["curves"]["epoch"] == [1]
    assert len(on_disk["extra"]["early_exit_accuracy"]) == 2
    with np.load(arrays[1]) as npz:
        assert np.isnan(npz["early_exit_accuracy"]).all()  # MLP: undefined
        assert npz["layer_usage"].shape == (2,)
        assert npz["layer_usage"].sum() == pytest.approx(1.0)

    table = aggregate_table(metrics, tmp_path / "glonet.csv", required_columns=REQUIRED_COLUMNS)
    diverged = table.set_index("run_id")["diverged"]
    assert diverged.to_dict() == {"model-GloNet_depth-3_seed-0": False, "model-MLP_depth-3_seed-0": False,
                                  "model-MLP_depth-4_seed-0": True}

    outputs = {name: tmp_path / f"{name}.png" for name in
               ("accuracy_vs_depth", "learning_curves", "layer_usage", "early_exit")}
    figures_job({"dpi": 80}, tmp_path / "glonet.csv", arrays, outputs)
    for path in outputs.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schema_accepts_presets_and_rejects_typos(repo_root: Path) -> None:
    import jsonschema
    import yaml

    schema = yaml.safe_load((repo_root / "workflow/schemas/glonet.schema.yaml").read_text())
    base = default_config()
    for overlay in ("config/smoke.yaml", "config/paper.yaml", None):
        section = merged(base, yaml.safe_load((repo_root / overlay).read_text()) if overlay else {})["glonet"]
        jsonschema.validate(section, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"enabled": True, "depth": [6]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"models": ["ResNet"]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"extra_grids": [{"name": "main"}]}, schema)
