"""GloNet and its two baselines (plain MLP, residual MLP) on flattened MNIST.

All three share the same stack: ``depth - 1`` hidden Linear+ReLU layers of ``features``
units and one linear head, so "depth" counts Linear layers including the head (seed
002's ``num_layers``). They differ only in what reaches the head:

- ``GloNet``: the sum of every hidden layer's activated output;
- ``MLP``: the last hidden layer's output;
- ``ResMLP``: after the first layer, ``x <- x + ReLU(Linear(x))``; the final ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("GloNet", "MLP", "ResMLP")


@dataclass
class DepthNetConfig:
    model: str = "GloNet"
    depth: int = 10  # Linear layers including the head
    features: int = 256
    in_features: int = 28 * 28
    classes: int = 10

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.depth < 2:
            raise ValueError(f"depth counts the head too, so it must be >= 2, got {self.depth}")
        if self.features < 1:
            raise ValueError(f"features must be >= 1, got {self.features}")

    @property
    def hidden_layers(self) -> int:
        return self.depth - 1


class DepthNet(nn.Module):
    """One class for all three architectures so that they share parameters exactly."""

    def __init__(self, config: DepthNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.in_features] + [config.features] * config.hidden_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(config.features, config.classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in [*self.hidden, self.head]:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def iter_layers(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield, per hidden layer, (its activated output, what the head would read if
        the net ended there). For ResMLP the output is the residual branch ReLU(Linear(x))."""
        x = x.flatten(1)
        mode = self.config.model
        total = None
        for index, layer in enumerate(self.hidden):
            h = F.relu(layer(x))
            if mode == "GloNet":
                total = h if total is None else total + h
                x = h
                yield h, total
            elif mode == "ResMLP" and index > 0:
                x = x + h
                yield h, x
            else:
                x = h
                yield h, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = x
        for _, stream in self.iter_layers(x):
            pass
        return self.head(stream)

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [h for h, _ in self.iter_layers(x)]

    @property
    def head_reads_sum(self) -> bool:
        """GloNet sums by design; ResMLP's residual stream ends as the same sum of branch
        outputs. An MLP's head reads the last layer only, so early exit is undefined."""
        return self.config.model != "MLP"

    @torch.no_grad()
    def early_exit_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the head applied to the sum of the first k layer outputs, for
        k = 1..depth-1, shape (depth-1, batch, classes)."""
        if not self.head_reads_sum:
            raise ValueError("early exit needs a head that reads a sum of layers (GloNet or ResMLP), not MLP")
        return torch.stack([self.head(stream) for _, stream in self.iter_layers(x)])


def weight_one_norms(model: DepthNet) -> torch.Tensor:
    """Matrix 1-norm of each hidden layer's weight, in the (in, out) kernel layout that
    the public replication plots: the max over output units of the sum of |W|."""
    return torch.stack([layer.weight.detach().abs().sum(dim=1).max() for layer in model.hidden])


def count_linear_layers(model: DepthNet) -> int:
    """Linear layers including the head: equals ``config.depth`` by construction."""
    return sum(isinstance(module, nn.Linear) for module in model.modules())


def train_flops_per_sample(config: DepthNetConfig) -> float:
    """FLOPs of one training sample in the Linear layers: forward and weight-gradient GEMMs
    everywhere (2 FLOPs per multiply-add each), input-gradient GEMMs everywhere but the
    first layer (the pixels need no gradient)."""
    first = config.in_features * config.features
    rest = (config.hidden_layers - 1) * config.features * config.features + config.features * config.classes
    return 4.0 * first + 6.0 * rest
