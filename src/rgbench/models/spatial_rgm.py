"""Spatial RGM: a two-level Gumbel-softmax hierarchy on 28x28 MNIST (seed 001).

Bottom-up, an image is compressed to z1, a 7x7 grid of local codes (one of ``codes``
categories per cell), and z1 to z2, a distribution over the ten digit concepts.
Top-down, z2 predicts a prior over every z1 cell, and a transposed-convolution decoder
turns z1 back into pixels. Because the decoder is purely convolutional, each z1 cell can
only touch a fixed window of the output; :func:`receptive_windows` derives that window
from the layer geometry so the locality experiment measures against the architecture
rather than against a guess.

Loss (every weight in :class:`SpatialRGMConfig`):
    recon_weight * MSE(x_hat, x) + class_weight * CE(z2, y)
    + kl_weight * mean over cells of KL(q(z1|x) || p(z1|z2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

GRID = 7
IMAGE = 28


@dataclass
class SpatialRGMConfig:
    """The config's model, loss and gumbel blocks merged (no defaults: config.yaml has them)."""

    codes: int  # categories per z1 cell
    classes: int  # z2 concepts
    channels1: int
    channels2: int
    enc2_hidden: int
    dec2_hidden: int
    dec1_channels: int
    recon_weight: float
    class_weight: float
    kl_weight: float
    tau_start: float  # Gumbel temperature, annealed geometrically to tau_end
    tau_end: float
    straight_through: bool  # hard one-hot forward, soft gradient, while training

    def __post_init__(self) -> None:
        for name in ("codes", "classes", "channels1", "channels2", "enc2_hidden", "dec2_hidden", "dec1_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.codes < 2:
            raise ValueError(f"codes must be >= 2 (a code must be changeable), got {self.codes}")
        if self.tau_start <= 0 or self.tau_end <= 0:
            raise ValueError("Gumbel temperatures must be positive")
        for name in ("recon_weight", "class_weight", "kl_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


def tau_at(config: SpatialRGMConfig, progress: float) -> float:
    """Gumbel temperature after ``progress`` in [0, 1] of training (geometric schedule)."""
    progress = min(max(progress, 0.0), 1.0)
    return float(config.tau_start * (config.tau_end / config.tau_start) ** progress)


class SpatialRGM(nn.Module):
    def __init__(self, config: SpatialRGMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        # 28 -> 14 -> 7: each z1 cell summarises a neighbourhood centred on its 4x4 patch.
        self.enc1 = nn.Sequential(
            nn.Conv2d(1, c.channels1, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c.channels1, c.channels2, 4, 2, 1), nn.ReLU(),
        )
        self.z1_proj = nn.Conv2d(c.channels2, c.codes, 1)
        self.enc2 = nn.Sequential(
            nn.Flatten(), nn.Linear(c.codes * GRID * GRID, c.enc2_hidden), nn.ReLU(),
            nn.Linear(c.enc2_hidden, c.classes),
        )
        self.dec2 = nn.Sequential(
            nn.Linear(c.classes, c.dec2_hidden), nn.ReLU(),
            nn.Linear(c.dec2_hidden, c.codes * GRID * GRID),
        )
        self.dec1 = nn.Sequential(
            nn.ConvTranspose2d(c.codes, c.dec1_channels, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c.dec1_channels, 1, 4, 2, 1), nn.Sigmoid(),
        )

    # --- the pieces, each usable on its own by the experiments -------------------------
    def z1_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [0, 1] -> (N, codes, 7, 7) logits of q(z1 | x)."""
        return self.z1_proj(self.enc1(x))

    def z1_prior_logits(self, z2: torch.Tensor) -> torch.Tensor:
        """(N, classes) one-hot or soft z2 -> (N, codes, 7, 7) logits of p(z1 | z2)."""
        return self.dec2(z2).view(-1, self.config.codes, GRID, GRID)

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """(N, codes, 7, 7) one-hot or soft codes -> (N, 1, 28, 28) pixels in (0, 1)."""
        return self.dec1(z1)

    def classify(self, z1: torch.Tensor) -> torch.Tensor:
        """z2 logits from z1 codes."""
        return self.enc2(z1)

    def sample_z1(self, logits: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
        """Gumbel-softmax over the code axis (dim 1): soft relaxed sample or straight-through one-hot."""
        return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=1)

    def forward(self, x: torch.Tensor, tau: float = 1.0, hard: bool | None = None) -> dict[str, torch.Tensor]:
        """Training pass with a Gumbel sample of z1 (soft unless ``straight_through`` or ``hard``)."""
        logits = self.z1_logits(x)
        z1 = self.sample_z1(logits, tau, self.config.straight_through if hard is None else hard)
        z2_logits = self.classify(z1)
        # The prior is conditioned on the soft concept so the KL term also shapes enc2.
        prior = self.z1_prior_logits(F.softmax(z2_logits, dim=1))
        return {"z1_logits": logits, "z1": z1, "z2_logits": z2_logits, "prior_logits": prior,
                "recon": self.decode(z1)}

    @torch.no_grad()
    def encode_hard(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Evaluation pass: z1 = argmax code per cell (one-hot), z2 and the reconstruction from it."""
        logits = self.z1_logits(x)
        codes = logits.argmax(dim=1)
        z1 = one_hot_codes(codes, self.config.codes)
        return {"codes": codes, "z1": z1, "z2_logits": self.classify(z1), "recon": self.decode(z1)}


def one_hot_codes(codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """(N, 7, 7) integer codes -> (N, codes, 7, 7) float one-hot."""
    return F.one_hot(codes.long(), num_codes).permute(0, 3, 1, 2).float()


def categorical_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """Mean over batch and cells of KL(q || p) between categoricals on dim 1 (nats)."""
    log_q = F.log_softmax(q_logits, dim=1)
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=1).mean()


def loss_terms(model: SpatialRGM, x: torch.Tensor, y: torch.Tensor, tau: float) -> dict[str, torch.Tensor]:
    out = model(x, tau=tau)
    c = model.config
    recon = F.mse_loss(out["recon"], x)
    cls = F.cross_entropy(out["z2_logits"], y)
    kl = categorical_kl(out["z1_logits"], out["prior_logits"])
    total = c.recon_weight * recon + c.class_weight * cls + c.kl_weight * kl
    return {"loss": total, "recon": recon, "class": cls, "kl": kl}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- receptive windows -------------------------------------------------------------------
_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Identity, nn.Dropout,
                nn.BatchNorm2d, nn.SiLU)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _layer_span(layer: nn.Module, lo: int, hi: int, axis: int, size: int) -> tuple[int, int, int]:
    """Output index range [lo', hi'] reachable from input range [lo, hi] along one axis,
    and the layer's output size. Exact for convolution geometry; clipped to the output."""
    if isinstance(layer, nn.ConvTranspose2d):
        k, s, p, d = (_pair(getattr(layer, a))[axis] for a in ("kernel_size", "stride", "padding", "dilation"))
        op = _pair(layer.output_padding)[axis]
        out_size = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        # input i writes to outputs i*s - p + d*j for j in 0..k-1
        new_lo, new_hi = lo * s - p, hi * s - p + d * (k - 1)
    elif isinstance(layer, nn.Conv2d):
        k, s, p, d = (_pair(getattr(layer, a))[axis] for a in ("kernel_size", "stride", "padding", "dilation"))
        if layer.padding_mode != "zeros":
            raise ValueError(f"padding mode {layer.padding_mode!r} wraps around; no local window")
        out_size = (size + 2 * p - d * (k - 1) - 1) // s + 1
        # output o reads inputs o*s - p + d*j: it sees [lo, hi] when o*s - p <= hi and o*s - p + d*(k-1) >= lo
        new_lo = math.ceil((lo + p - d * (k - 1)) / s)
        new_hi = math.floor((hi + p) / s)
    elif isinstance(layer, nn.Upsample):
        if layer.mode != "nearest" or layer.scale_factor is None:
            raise ValueError("only nearest-neighbour Upsample with a scale_factor has a fixed window")
        f = int(_pair(layer.scale_factor)[axis]) if not isinstance(layer.scale_factor, float) else int(layer.scale_factor)
        out_size = size * f
        new_lo, new_hi = lo * f, hi * f + f - 1
    elif isinstance(layer, _ELEMENTWISE):
        return lo, hi, size
    else:
        raise TypeError(f"cannot derive a receptive window through {type(layer).__name__}: it may mix positions")
    return max(new_lo, 0), min(new_hi, out_size - 1), out_size


def flatten_layers(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in flatten_layers(child)]
    return [module]


def receptive_window(decoder: nn.Module | Iterable[nn.Module], cell: tuple[int, int],
                     grid: tuple[int, int] = (GRID, GRID)) -> tuple[int, int, int, int]:
    """Pixels of the decoder's output that z1 cell ``(row, col)`` can influence.

    Returns inclusive bounds ``(row_lo, row_hi, col_lo, col_hi)`` derived from the layer
    geometry (kernel, stride, padding, dilation), so it holds for any weights. Layers
    that mix positions (linear, attention, non-nearest upsampling) raise ``TypeError``.
    """
    layers = flatten_layers(decoder) if isinstance(decoder, nn.Module) else list(decoder)
    bounds = []
    for axis in (0, 1):
        lo = hi = int(cell[axis])
        size = int(grid[axis])
        if not 0 <= lo < size:
            raise ValueError(f"cell {cell} lies outside the {grid} grid")
        for layer in layers:
            lo, hi, size = _layer_span(layer, lo, hi, axis, size)
        bounds += [lo, hi]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def receptive_windows(decoder: nn.Module, grid: tuple[int, int] = (GRID, GRID)) -> torch.Tensor:
    """(rows, cols, 4) tensor of every cell's window (see :func:`receptive_window`)."""
    return torch.tensor([[receptive_window(decoder, (r, c), grid) for c in range(grid[1])] for r in range(grid[0])])


def window_mask(window: Iterable[int], shape: tuple[int, int] = (IMAGE, IMAGE)) -> torch.Tensor:
    r0, r1, c0, c1 = (int(v) for v in window)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask


def gradient_support(decode: Callable[[torch.Tensor], torch.Tensor], z1: torch.Tensor,
                     cell: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool: output pixels whose value has a nonzero gradient w.r.t. cell ``cell`` of ``z1``.

    An empirical cross-check of :func:`receptive_window` at one input (a ReLU that is off
    can hide part of the window, so the support is a subset of the geometric window).
    """
    z1 = z1[:1].detach().clone()
    r, c = cell
    # A random tangent on all code channels of the one cell: the output's directional
    # derivative is nonzero wherever the pixel depends on that cell (almost surely).
    tangent = torch.zeros_like(z1)
    generator = torch.Generator().manual_seed(0)
    tangent[0, :, r, c] = torch.rand(z1.shape[1], generator=generator, dtype=z1.dtype) + 0.5
    _, derivative = torch.func.jvp(decode, (z1,), (tangent,))
    return derivative[0, 0] != 0
