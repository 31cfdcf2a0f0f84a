"""GloNet and its two baselines (plain MLP, residual MLP) on flattened MNIST.

All three share one stack of ``hidden_layers`` Linear layers of ``features`` units (the
first reads the 784 pixels), each followed by the activation, and one linear head. They
differ only in what reaches the head:

- ``GloNet``: the raw sum of every hidden layer's activated output, the first included
  (both anchors: the official notebook and the public replication);
- ``MLP``: the last hidden layer's output. With ``mlp_output="hidden"`` the MLP returns
  that output itself as its logits and the head is never used, as the official
  notebook's stored code does (cross-entropy over ``features`` outputs, 10 of them
  labelled);
- ``ResMLP``: ``x <- x + act(Linear(x))`` from hidden layer ``residual_start`` (0-based)
  on, ``x <- act(Linear(x))`` before it; the final ``x``. The notebook's skip variant
  starts at its third hidden layer (``residual_start=2``).

Initialisations (weights; fan-in = the layer's input width):

- ``kaiming_normal``: N(0, 2/fan_in), biases 0 (torch's ``kaiming_normal_``);
- ``kaiming_truncated``: normal truncated at +-2 sd, rescaled so that the variance is
  2/fan_in, biases 0 (JAX's ``kaiming_normal``, the replication's ``linear_mnist`` code);
- ``lecun_truncated``: the same with variance 1/fan_in (JAX's ``lecun_normal``, flax's
  ``nn.Dense`` default, i.e. the seed document's code as printed);
- ``torch_default``: ``nn.Linear``'s own: U(+-1/sqrt(fan_in)) for weights and biases
  (the official notebook).

The head is initialised like the hidden layers in every scheme (as both anchors do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("GloNet", "MLP", "ResMLP")
INITS = ("kaiming_normal", "kaiming_truncated", "lecun_truncated", "torch_default")
MLP_OUTPUTS = ("head", "hidden")

# Standard deviation of a standard normal truncated to [-2, 2]: JAX divides its
# truncated-normal draws' scale by this so that the variance is exactly the target.
TRUNCATED_STD = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0)))


@dataclass
class DepthNetConfig:
    model: str
    hidden_layers: int
    features: int
    init: str
    negative_slope: float  # 0: ReLU; > 0: LeakyReLU with this slope
    mlp_output: str
    residual_start: int
    in_features: int = 28 * 28  # not config keys: fixed by the data
    classes: int = 10

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.mlp_output not in MLP_OUTPUTS:
            raise ValueError(f"mlp_output must be one of {MLP_OUTPUTS}, got {self.mlp_output!r}")
        if self.hidden_layers < 1:
            raise ValueError(f"hidden_layers must be >= 1, got {self.hidden_layers}")
        if self.features < 1:
            raise ValueError(f"features must be >= 1, got {self.features}")
        if not 0.0 <= self.negative_slope < 1.0:
            raise ValueError(f"negative_slope must be in [0, 1), got {self.negative_slope}")
        if self.residual_start < 1:
            # hidden layer 0 maps the pixels to `features` units: nothing to add it to
            raise ValueError(f"residual_start must be >= 1, got {self.residual_start}")
        if self.model == "MLP" and self.mlp_output == "hidden" and self.features < self.classes:
            raise ValueError(f"an MLP whose last hidden layer is its output needs features >= {self.classes}")

    @property
    def linear_layers(self) -> int:
        """Linear layers including the head (the replication's ``num_layers``)."""
        return self.hidden_layers + 1


def init_linear(layer: nn.Linear, scheme: str) -> None:
    """Initialise one Linear layer in place with ``scheme`` (one of :data:`INITS`)."""
    if scheme == "torch_default":
        layer.reset_parameters()
        return
    fan_in = layer.weight.shape[1]
    if scheme == "kaiming_normal":
        nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan_in))
    elif scheme in ("kaiming_truncated", "lecun_truncated"):
        variance = (2.0 if scheme == "kaiming_truncated" else 1.0) / fan_in
        std = math.sqrt(variance) / TRUNCATED_STD
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2.0 * std, 2.0 * std)
    else:
        raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
    nn.init.zeros_(layer.bias)


def target_weight_variance(scheme: str, fan_in: int) -> float:
    """The weight variance each scheme aims at (torch's default: U(+-1/sqrt(fan_in)))."""
    return {"kaiming_normal": 2.0, "kaiming_truncated": 2.0, "lecun_truncated": 1.0,
            "torch_default": 1.0 / 3.0}[scheme] / fan_in


class DepthNet(nn.Module):
    """One class for all three architectures so that they share parameters exactly."""

    def __init__(self, config: DepthNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.in_features] + [config.features] * config.hidden_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # Built for every model so that parameter counts match the anchors' models; an
        # MLP with mlp_output="hidden" never uses it (no gradient reaches it).
        self.head = nn.Linear(config.features, config.classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in [*self.hidden, self.head]:
            init_linear(layer, self.config.init)

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        slope = self.config.negative_slope
        return F.leaky_relu(z, slope) if slope > 0 else F.relu(z)

    @property
    def head_reads_sum(self) -> bool:
        """GloNet sums by design; ResMLP's residual stream ends as a sum of branch outputs.
        An MLP's head reads the last layer only, so early exit is undefined for it."""
        return self.config.model != "MLP"

    def iter_layers(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per hidden layer: (its pre-activation z, its activated output h, the stream the
        head would read if the net ended there). For ResMLP, h is the residual branch."""
        x = x.flatten(1)
        mode = self.config.model
        total = None
        for index, layer in enumerate(self.hidden):
            z = layer(x)
            h = self.activation(z)
            if mode == "GloNet":
                total = h if total is None else total + h
                x = h
                yield z, h, total
            elif mode == "ResMLP" and index >= self.config.residual_start:
                x = x + h
                yield z, h, x
            else:
                x = h
                yield z, h, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = x
        for _, _, stream in self.iter_layers(x):
            pass
        if self.config.model == "MLP" and self.config.mlp_output == "hidden":
            return stream
        return self.head(stream)


def induced_one_norm(matrix: torch.Tensor) -> torch.Tensor:
    """The induced matrix 1-norm of a 2-D array laid out (rows, columns): the largest sum of
    absolute values down a column (``numpy.linalg.norm(m, ord=1)``)."""
    return matrix.abs().sum(dim=0).max()


def replication_parameter_norms(model: DepthNet) -> torch.Tensor:
    """Per Linear layer (hidden layers, then the head), the public replication's parameter
    measure: the induced 1-norm of the kernel in its (in, out) layout, i.e. the largest sum
    of |W| over the inputs of one output unit, plus the L1 norm of the bias."""
    layers = [*model.hidden, model.head]
    return torch.stack([induced_one_norm(layer.weight.detach().T) + layer.bias.detach().abs().sum()
                        for layer in layers])


def train_flops_per_sample(config: DepthNetConfig) -> float:
    """FLOPs of one training sample in the Linear layers: forward and weight-gradient GEMMs
    everywhere (2 FLOPs per multiply-add each), input-gradient GEMMs everywhere but the
    first layer (the pixels need no gradient)."""
    first = config.in_features * config.features
    rest = (config.hidden_layers - 1) * config.features * config.features + config.features * config.classes
    return 4.0 * first + 6.0 * rest
