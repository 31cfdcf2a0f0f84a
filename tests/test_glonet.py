"""GloNet depth study: model maths (architectures, initialisations, activation), the
measures (layer usage, the replication's L1 measure, early exit, convergence), training
behaviour (divergence, reproducibility, resume) and the job's outputs, on tiny nets and
the shipped MNIST subset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import default_config, merged
from rgbench.config import ConfigError
from rgbench.experiments.glonet import (
    MEASURE_KEYS,
    RECIPE_KEYS,
    RUN_KEYS,
    Data,
    GloNetRunConfig,
    best_exit_k,
    grid_run_config,
    layer_statistics,
    layers_for_fraction,
    level_name,
    steps_to_level,
    to_inputs,
    train,
    train_job,
)
from rgbench.models.glonet import (
    INITS,
    TRUNCATED_STD,
    DepthNet,
    DepthNetConfig,
    init_linear,
    replication_parameter_norms,
    target_weight_variance,
    train_flops_per_sample,
)

REQUIRED_COLUMNS = ["model", "depth", "features", "epochs", "seed", "test_accuracy", "train_seconds", "diverged"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def net_config(**overrides) -> DepthNetConfig:
    values = dict(model="GloNet", hidden_layers=3, features=16, init="kaiming_normal", negative_slope=0.0,
                  mlp_output="head", residual_start=1)
    values.update(overrides)
    return DepthNetConfig(**values)


def tiny_data(n_train: int = 192, n_val: int = 64, n_test: int = 64, seed: int = 0) -> Data:
    """Class c lights its own block of 78 pixels, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = 0.3 * torch.rand(n, 784, generator=g)
        for c in range(10):
            x[y == c, 78 * c:78 * (c + 1)] += 0.7
        return x, y

    return Data(*sample(n_train), *sample(n_val), *sample(n_test))


def hand_set_net(model: str, residual_start: int = 1, negative_slope: float = 0.0,
                 mlp_output: str = "head") -> DepthNet:
    """3 hidden layers, 2 inputs, 2 features, 1 output, weights set by hand."""
    net = DepthNet(DepthNetConfig(model=model, hidden_layers=3, features=2, init="kaiming_normal",
                                  negative_slope=negative_slope, mlp_output=mlp_output, residual_start=residual_start,
                                  in_features=2, classes=1 if mlp_output == "head" else 2))
    with torch.no_grad():
        net.hidden[0].weight.copy_(torch.eye(2))
        net.hidden[0].bias.zero_()
        net.hidden[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
        net.hidden[1].bias.zero_()
        net.hidden[2].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))
        net.hidden[2].bias.copy_(torch.tensor([0.0, 1.0]))
        net.head.weight.copy_(torch.ones_like(net.head.weight))
        net.head.bias.fill_(0.5)
    return net


# --- initialisation and activation -----------------------------------------------------

@pytest.mark.parametrize("scheme", INITS)
def test_init_weight_variance_matches_its_target_at_fan_in_256(scheme: str) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 512)
    init_linear(layer, scheme)
    target = target_weight_variance(scheme, 256)
    # 131,072 draws: the sample variance is within 1% of the truth with overwhelming odds
    assert layer.weight.var().item() == pytest.approx(target, rel=0.03)
    assert abs(layer.weight.mean().item()) < 0.01 * math.sqrt(target)


def test_init_shapes_of_the_distributions() -> None:
    torch.manual_seed(0)
    layers = {scheme: torch.nn.Linear(256, 512) for scheme in INITS}
    for scheme, layer in layers.items():
        init_linear(layer, scheme)
    bound = 1 / math.sqrt(256)
    # torch's default: uniform weights and biases within +-1/sqrt(fan_in), biases not zero
    assert layers["torch_default"].weight.abs().max().item() <= bound
    assert layers["torch_default"].weight.abs().max().item() > 0.99 * bound
    assert 0 < layers["torch_default"].bias.abs().max().item() <= bound
    for scheme, scale in (("kaiming_truncated", 2.0), ("lecun_truncated", 1.0)):
        cut = 2 * math.sqrt(scale / 256) / TRUNCATED_STD  # +-2 sd of the underlying normal
        weights = layers[scheme].weight.abs()
        assert weights.max().item() <= cut and weights.max().item() > 0.99 * cut
        assert torch.count_nonzero(layers[scheme].bias) == 0
    # the untruncated normal has about 0.05% of its draws beyond 3.3 sd
    std = math.sqrt(2 / 256)
    assert layers["kaiming_normal"].weight.abs().max().item() > 3.3 * std
    assert torch.count_nonzero(layers["kaiming_normal"].bias) == 0


def test_truncated_normal_std_is_that_of_a_standard_normal_cut_at_two() -> None:
    from scipy.stats import truncnorm

    assert TRUNCATED_STD == pytest.approx(truncnorm(-2, 2).std(), rel=1e-12)
    assert TRUNCATED_STD == pytest.approx(0.87962566103423978, rel=1e-12)  # the constant JAX divides by


def test_head_is_initialised_like_the_hidden_layers() -> None:
    torch.manual_seed(0)
    net = DepthNet(net_config(init="lecun_truncated", features=256, hidden_layers=2, classes=2000))
    assert net.head.weight.var().item() == pytest.approx(1 / 256, rel=0.03)


def test_activation_relu_and_leaky_relu() -> None:
    z = torch.tensor([-2.0, -0.5, 0.0, 1.5])
    relu = DepthNet(net_config(negative_slope=0.0))
    leaky = DepthNet(net_config(negative_slope=0.2))
    assert relu.activation(z).tolist() == [0.0, 0.0, 0.0, 1.5]
    torch.testing.assert_close(leaky.activation(z), torch.tensor([-0.4, -0.1, 0.0, 1.5]))


def test_leaky_slope_reaches_the_forward_pass() -> None:
    # x = [1, 2]: layer 2 gives [2, -2] -> leaky 0.2 -> [2, -0.4]; layer 3: [1.6, -1] -> [1.6, -0.2]
    # GloNet sum = [1, 2] + [2, -0.4] + [1.6, -0.2] = [4.6, 1.4] -> head 6.0 + 0.5
    x = torch.tensor([[1.0, 2.0]])
    assert hand_set_net("GloNet", negative_slope=0.2)(x).item() == pytest.approx(6.5)


def test_inputs_are_scaled_as_configured() -> None:
    images = np.array([[[0, 255]]], dtype=np.uint8)
    torch.testing.assert_close(to_inputs(images, 0.0, 1.0), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(to_inputs(images, 0.5, 0.5), torch.tensor([[-1.0, 1.0]]))  # the notebook's


# --- architectures -------------------------------------------------------------------

@pytest.mark.parametrize("model", ["GloNet", "MLP", "ResMLP"])
@pytest.mark.parametrize("hidden", [1, 2, 6])
def test_shapes_and_layer_counts(model: str, hidden: int) -> None:
    config = net_config(model=model, hidden_layers=hidden)
    net = DepthNet(config)
    x = torch.rand(5, 1, 28, 28)
    assert net(x).shape == (5, 10)
    outputs = [h for _, h, _ in net.iter_layers(x)]
    assert len(outputs) == hidden and all(h.shape == (5, 16) for h in outputs)
    # the provenance's linear_layers is what the net holds: the hidden layers and the head
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == hidden + 1 == config.linear_layers
    expected_params = (784 * 16 + 16) + (hidden - 1) * (16 * 16 + 16) + (16 * 10 + 10)
    assert sum(p.numel() for p in net.parameters()) == expected_params
    assert train_flops_per_sample(config) == 4 * 784 * 16 + 6 * ((hidden - 1) * 256 + 160)


def test_depth_conventions() -> None:
    glonet = default_config()["glonet"]
    linear = grid_run_config(glonet, "seed", "GloNet", 6, 0)
    hidden = grid_run_config(glonet, "notebook", "GloNet", 6, 0)
    assert linear.hidden_layers == 5 and linear.net_config().linear_layers == 6
    assert hidden.hidden_layers == 6 and hidden.net_config().linear_layers == 7
    with pytest.raises(ValueError, match="no hidden layer"):
        grid_run_config(glonet, "seed", "GloNet", 1, 0)


def test_glonet_sum_mlp_and_resmlp_on_hand_set_weights() -> None:
    x = torch.tensor([[1.0, 2.0]])
    # h1 = relu(x) = [1, 2]; h2 = relu([2, -2]) = [2, 0]
    # GloNet: h3 = relu([2, -1]) = [2, 0]; sum = [5, 2] -> 7.5
    # MLP: head(h3) = 2 + 0.5 = 2.5
    # ResMLP from layer 1: s2 = h1 + h2 = [3, 2]; h3 = relu([5, -2]) = [5, 0]; s3 = [8, 2] -> 10.5
    # ResMLP from layer 2 (the notebook's): s2 = h2 = [2, 0]; h3 = [2, 0]; s3 = [4, 0] -> 4.5
    assert hand_set_net("GloNet")(x).item() == 7.5
    assert hand_set_net("MLP")(x).item() == 2.5
    assert hand_set_net("ResMLP", residual_start=1)(x).item() == 10.5
    assert hand_set_net("ResMLP", residual_start=2)(x).item() == 4.5
    # the notebook's MLP returns its last hidden layer itself: h3 = [2, 0]
    assert hand_set_net("MLP", mlp_output="hidden")(x).tolist() == [[2.0, 0.0]]


def test_unused_head_gets_no_gradient() -> None:
    net = DepthNet(net_config(model="MLP", mlp_output="hidden", features=32))
    torch.nn.functional.cross_entropy(net(torch.rand(4, 784)), torch.tensor([0, 1, 2, 3])).backward()
    assert net.head.weight.grad is None and net.hidden[0].weight.grad is not None


def test_glonet_and_resmlp_coincide_with_two_hidden_layers() -> None:
    # With two hidden layers both heads read h1 + act(W2 h1): the same function.
    torch.manual_seed(0)
    glonet = DepthNet(net_config(model="GloNet", hidden_layers=2, features=8))
    resmlp = DepthNet(net_config(model="ResMLP", hidden_layers=2, features=8))
    resmlp.load_state_dict(glonet.state_dict())
    x = torch.rand(4, 784)
    torch.testing.assert_close(glonet(x), resmlp(x))


def test_bad_configs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="hidden_layers"):
        net_config(hidden_layers=0)
    with pytest.raises(ValueError, match="model"):
        net_config(model="ResNet")
    with pytest.raises(ValueError, match="init"):
        net_config(init="xavier")
    with pytest.raises(ValueError, match="residual_start"):
        net_config(residual_start=0)
    with pytest.raises(ValueError, match="features >= 10"):
        net_config(model="MLP", mlp_output="hidden", features=8)
    glonet = default_config()["glonet"]
    with pytest.raises(ValueError, match="optimizer"):
        grid_run_config(glonet, "seed", "GloNet", 6, 0, optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr"):
        grid_run_config(glonet, "seed", "GloNet", 6, 0, lr=0.0)
    with pytest.raises(ValueError, match="depth_counts"):
        grid_run_config(glonet, "seed", "GloNet", 6, 0, depth_counts="layers")
    with pytest.raises(ConfigError, match="unknown|ratee"):
        grid_run_config(glonet, "seed", "GloNet", 6, 0, learning_ratee=0.1)


# --- measures ------------------------------------------------------------------------

def test_usage_summaries() -> None:
    assert layers_for_fraction(np.array([0.5, 0.3, 0.15, 0.05]), 0.9) == 3
    assert layers_for_fraction(np.array([0.5, 0.3, 0.15, 0.05]), 0.8) == 2  # exactly 0.8 counts
    assert layers_for_fraction(np.array([1.0, 1.0]), 1.0) == 2
    assert layers_for_fraction(np.array([np.nan, 1.0]), 0.9) is None
    assert best_exit_k(np.array([0.5, 0.966, 0.97, 0.968]), 0.005) == 2  # within 0.5 points of the best
    assert best_exit_k(np.array([0.5, 0.966, 0.97, 0.968]), 0.0) == 3
    assert best_exit_k(np.full(3, np.nan), 0.005) is None


def test_steps_to_level_and_censoring() -> None:
    steps, accuracy = [8, 16, 24, 32], [0.5, 0.91, 0.89, 0.96]
    assert steps_to_level(steps, accuracy, 0.9, 32) == 16
    assert steps_to_level(steps, accuracy, 0.95, 32) == 32
    assert steps_to_level(steps, accuracy, 0.97, 32) == 33  # never reached: censored past the run
    assert level_name(0.9) == "90" and level_name(0.975) == "97_5"


def test_layer_statistics_on_hand_set_net() -> None:
    net = hand_set_net("GloNet")
    x = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    # per-sample L1 of h: layer1 [3, 1] -> 2; layer2 h2 = [2,0],[0,0] -> [2, 0] -> 1;
    # layer3 h3 = relu([2,-1]) = [2,0], relu([0,1]) = [0,1] -> [2, 1] -> 1.5
    stats = layer_statistics(net, x, torch.tensor([0, 0]), batch_size=2)
    np.testing.assert_allclose(stats["layer_l1"], [2.0, 1.0, 1.5])
    np.testing.assert_allclose(stats["layer_usage"], np.array([2.0, 1.0, 1.5]) / 4.5)
    # the replication's measure: pre-activations z (batch x units), max over units of the
    # column sums of |z|, / (1 batch * 2): z1 = [[1,2],[0,1]] -> max(1, 3) = 3 -> 1.5;
    # z2 = [[2,-2],[0,-1]] -> max(2, 3) -> 1.5; z3 = [[2,-1],[0,1]] -> max(2, 2) -> 1
    np.testing.assert_allclose(stats["replication_l1"], [1.5, 1.5, 1.0])
    # logits = head(sum) = 1*s1 + 1*s2 + 0.5: sums [5, 2] and [0, 2] -> [7.5, 2.5] -> 10 / 2
    assert stats["replication_head_l1"] == pytest.approx(5.0)
    np.testing.assert_allclose(stats["exit_accuracy"], [1.0, 1.0, 1.0])  # one class: always right
    # in batches of 1 the divisor is 2 batches * 1 and the max is taken per sample
    single = layer_statistics(net, x, torch.tensor([0, 0]), batch_size=1)
    np.testing.assert_allclose(single["replication_l1"], [(2 + 1) / 2, (2 + 1) / 2, (2 + 1) / 2])


def test_early_exit_reads_the_head_on_the_sum_of_the_first_k_layers() -> None:
    # Two classes, the head the identity: the exit logits after k layers are the stream.
    # x = [1, 2]: streams s1 = [1, 2] -> class 1; s2 = [3, 2] -> class 0; s3 = [5, 2] -> 0.
    x = torch.tensor([[1.0, 2.0]])
    net = hand_set_net("GloNet", mlp_output="hidden")  # 2 classes (the MLP-only output switch is moot)
    with torch.no_grad():
        net.head.weight.copy_(torch.eye(2))
        net.head.bias.zero_()
    np.testing.assert_allclose(layer_statistics(net, x, torch.tensor([0]), batch_size=1)["exit_accuracy"],
                               [0.0, 1.0, 1.0])
    np.testing.assert_allclose(layer_statistics(net, x, torch.tensor([1]), batch_size=1)["exit_accuracy"],
                               [1.0, 0.0, 0.0])
    # an MLP's head reads the last layer only: early exit is undefined
    mlp = layer_statistics(hand_set_net("MLP"), x, torch.tensor([0]), batch_size=1)
    assert np.isnan(mlp["exit_accuracy"]).all()


def test_replication_parameter_norms() -> None:
    net = hand_set_net("GloNet")
    # kernels (in, out) = W^T: max over output units of sum |W| over inputs, plus the bias L1:
    # [1, 1] + 0 -> 1; [2, 1] -> 2; [2, 1] + 1 -> 3; head [[1, 1]] -> 2 + 0.5
    np.testing.assert_allclose(replication_parameter_norms(net).numpy(), [1.0, 2.0, 3.0, 2.5])


# --- training ------------------------------------------------------------------------

def small_config(**overrides):
    """A run's config as the workflow builds it (the seed grid's recipe), made small."""
    values = dict(depth=4, features=16, epochs=2, batch_size=32, lr=0.01, train_limit=0, val_every_steps=4,
                  val_curve_images=0)
    values.update(overrides)
    model = values.pop("model", "GloNet")
    seed = values.pop("seed", 3)
    grid = values.pop("grid", "seed")
    return grid_run_config(default_config()["glonet"], grid, model, values.pop("depth"), seed, **values)


def test_training_learns_and_records_validation_curves() -> None:
    result = train(small_config(epochs=3), tiny_data())
    assert not result.fit.diverged
    assert result.curves["epoch"] == [1, 2, 3]
    assert result.steps_run == 3 * 6  # 192 images in batches of 32
    assert result.curves["val_step"] == [4, 8, 12, 16, 18]  # every 4 steps and after the last
    assert result.curves["val_accuracy"][-1] > 0.9  # chance is 0.1
    assert all(0 <= a <= 1 for a in result.curves["train_accuracy"])


def test_same_seed_same_metrics_other_seed_differs() -> None:
    data = tiny_data()
    first = train(small_config(), data)
    second = train(small_config(), data)
    assert first.curves["train_loss"] == second.curves["train_loss"]
    assert first.curves["val_accuracy"] == second.curves["val_accuracy"]
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    other = train(small_config(seed=4), data)
    assert other.curves["train_loss"] != first.curves["train_loss"]


@pytest.mark.parametrize("model", ["GloNet", "MLP"])
def test_huge_learning_rate_diverges_without_raising(model: str) -> None:
    result = train(small_config(model=model, optimizer="sgd", lr=1e8, momentum=0.0, epochs=3), tiny_data())
    assert result.fit.diverged
    assert len(result.fit.history) < 3 or result.fit.history[-1].diverged


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
    assert resumed.curves == {**reference.curves, "epoch_seconds": resumed.curves["epoch_seconds"]}
    assert resumed.steps_run == reference.steps_run
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)
    # another configuration never resumes from this checkpoint
    fresh = train(small_config(epochs=3, lr=0.02), data, checkpoint_path=checkpoint)
    assert fresh.fit.resumed_from_epoch == 0


# --- the job and its figures ---------------------------------------------------------

def run_dir(root: Path, run_id: str) -> Path:
    return root / "runs" / run_id


def test_job_trains_its_runs_and_the_figures_draw(mnist28: Path, tmp_path: Path) -> None:
    from rgbench.plotting.glonet import figures_job
    from rgbench.results import aggregate_table

    jobs = [  # (grid, model, depths, overrides): one job each, as the workflow hands them over
        ("seed", "GloNet", (3, 4), {}),
        ("seed", "MLP", (3, 4), {}),
        ("notebook", "ResMLP", (3,), {}),
        ("notebook", "MLP", (3,), {"optimizer": "sgd", "lr": 1e8}),  # diverges
    ]
    metrics, arrays = [], []
    for grid, model, depths, extra in jobs:
        runs = {}
        for depth in depths:
            run_id = f"grid-{grid}_model-{model}_depth-{depth}_seed-0"
            config = small_config(grid=grid, model=model, depth=depth, features=16, epochs=1, batch_size=128,
                                  train_limit=400, test_limit=200, val_every_steps=2, seed=0, **extra)
            runs[run_id] = {**{k: v for k, v in vars(config).items()}}
        job_metrics = [run_dir(tmp_path, key) / "metrics.json" for key in runs]
        job_arrays = [run_dir(tmp_path, key) / "arrays.npz" for key in runs]
        records = train_job({"runs": runs}, mnist28, job_metrics[::-1], job_arrays, device="cpu")
        assert [r["run_id"] for r in records] == list(runs)  # shallow first, whatever the output order
        assert not any((path.parent / "checkpoint.pt").exists() for path in job_metrics)
        metrics += job_metrics
        arrays += job_arrays
    record = json.loads(metrics[0].read_text())
    assert record["provenance"]["n_train"] == 400 and record["provenance"]["n_test"] == 200
    assert record["provenance"]["n_val"] == 100  # the subset's validation split, held out
    assert record["provenance"]["hidden_layers"] == 2 and record["provenance"]["steps_run"] == 4
    assert record["extra"]["curves"]["val_step"] == [2, 4]
    assert len(record["extra"]["test_exit_accuracy"]) == 2
    with np.load(arrays[2]) as npz:  # seed grid, MLP depth 3
        assert np.isnan(npz["test_exit_accuracy"]).all()  # MLP: undefined
        assert npz["layer_usage"].shape == (2,) and npz["layer_usage"].sum() == pytest.approx(1.0)
        assert npz["replication_param_l1"].shape == (3,)

    table = aggregate_table(metrics, tmp_path / "glonet.csv", required_columns=REQUIRED_COLUMNS)
    rows = table.set_index("run_id")
    assert rows["diverged"].to_dict() == {
        "grid-seed_model-GloNet_depth-3_seed-0": False, "grid-seed_model-GloNet_depth-4_seed-0": False,
        "grid-seed_model-MLP_depth-3_seed-0": False, "grid-seed_model-MLP_depth-4_seed-0": False,
        "grid-notebook_model-ResMLP_depth-3_seed-0": False, "grid-notebook_model-MLP_depth-3_seed-0": True}
    for column in ("val_accuracy", "usage_layers_90", "replication_l1_layers_90", "best_exit_k",
                   "exit_test_accuracy", "steps_to_val_90", "reached_val_90", "n_val", "init", "negative_slope"):
        assert column in table.columns, column
    assert "best_test_accuracy" not in table.columns  # nothing is picked on the test set
    assert rows.loc["grid-notebook_model-ResMLP_depth-3_seed-0", "hidden_layers"] == 3  # depth = hidden layers

    claims = tmp_path / "claims.yaml"
    claims.write_text("- {id: a, source: s, claim: c, anchor_value: 0.9, experiment: glonet, column: test_accuracy,\n"
                      "   where: {grid: seed, model: GloNet, depth: 3}, protocol: {epochs: 50}, verdict: {rule: at_least}}\n")
    outputs = {name: tmp_path / f"{name}.png" for name in
               ("accuracy_vs_depth", "learning_curves", "layer_usage", "early_exit")}
    figures_job({"dpi": 60}, tmp_path / "glonet.csv", arrays, outputs, claims_yaml=claims)
    for path in outputs.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_job_refuses_outputs_that_do_not_match_its_runs(mnist28: Path, tmp_path: Path) -> None:
    config = small_config(depth=3)
    with pytest.raises(ValueError, match="do not match"):
        train_job({"runs": {"grid-seed_model-GloNet_depth-3_seed-3": vars(config)}}, mnist28,
                  [tmp_path / "other" / "metrics.json"], [tmp_path / "other" / "arrays.npz"], device="cpu")


def test_anchors_come_from_the_shipped_claims(repo_root: Path) -> None:
    from rgbench.plotting.glonet import load_anchors

    anchors = load_anchors(repo_root / "src/rgbench/claims/glonet.yaml")
    notebook = anchors[anchors["grid"] == "notebook"].set_index(["model", "depth"])["anchor"]
    assert len(notebook) == 24  # 3 variants x 8 depths
    assert notebook[("GloNet", 30)] == pytest.approx(0.9354)
    assert notebook[("MLP", 30)] == pytest.approx(0.0974)
    assert notebook[("ResMLP", 120)] == pytest.approx(0.1042)
    seed = anchors[anchors["grid"] == "seed"].set_index(["model", "depth"])["anchor"]
    assert seed[("MLP", 200)] == pytest.approx(0.85) and seed[("GloNet", 200)] == pytest.approx(0.98)


def test_schema_accepts_presets_and_rejects_typos(repo_root: Path) -> None:
    import jsonschema
    import yaml
    from referencing import Registry, Resource

    schema = yaml.safe_load((repo_root / "workflow/schemas/glonet.schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema, registry=Registry().with_resource(
        "glonet", Resource.from_contents(schema)))
    base = default_config()
    for overlay in ("config/smoke.yaml", "config/paper.yaml", None):
        glonet = merged(base, yaml.safe_load((repo_root / overlay).read_text()) if overlay else {})["glonet"]
        validator.validate(glonet)
    glonet = base["glonet"]
    bad = [
        merged(glonet, {"grids": {"seed": {"depth": [6]}}}),  # misspelt key
        merged(glonet, {"grids": {"seed": {"models": ["ResNet"]}}}),
        merged(glonet, {"grids": {"seed": {"init": "xavier"}}}),
        merged(glonet, {"grids": {"Seed2": dict(glonet["grids"]["seed"])}}),  # bad grid name
        merged(glonet, {"grids": {"extra": {"models": ["MLP"]}}}),  # a new grid must state its whole recipe
    ]
    for config in bad:
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(config)


def _smk_list(text: str, name: str) -> list[str]:
    """The literal list assigned to ``name`` in a .smk file."""
    import ast

    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in the file")


def test_workflow_hand_off_keys_are_the_run_config_fields(repo_root: Path) -> None:
    """glonet_functions.smk restates the run config's key lists (importing the package
    there would load torch at every Snakemake start): the lists, the dataclass and the
    schema's grid keys must name the same keys."""
    import dataclasses

    import yaml

    text = (repo_root / "workflow/rules/glonet_functions.smk").read_text()
    assert _smk_list(text, "GLONET_RECIPE_KEYS") == list(RECIPE_KEYS)
    assert _smk_list(text, "GLONET_MEASURE_KEYS") == list(MEASURE_KEYS)
    assert {f.name for f in dataclasses.fields(GloNetRunConfig)} == {*RUN_KEYS, *MEASURE_KEYS, *RECIPE_KEYS}
    schema = yaml.safe_load((repo_root / "workflow/schemas/glonet.schema.yaml").read_text())
    assert set(schema["$defs"]["grid"]["required"]) == {"enabled", "models", "depths", "seeds", *RECIPE_KEYS}
    assert set(schema["required"]) == {"enabled", "grids", *MEASURE_KEYS}
