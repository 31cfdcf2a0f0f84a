"""Spatial RGM: a two-level Gumbel-softmax hierarchy on 28x28 MNIST (seed 001).

Bottom-up, an image is compressed to z1, a 7x7 grid of local codes (one of ``codes``
categories per cell), and z1 to z2, a distribution over the ten digit concepts.
Top-down, z2 predicts a prior over every z1 cell, and a transposed-convolution decoder
turns z1 back into pixels. The layers are those of the seed's origin repository
(github.com/yezune/from_pixels_to_planning, src/models/spatial_rgm.py at commit a0eb98c,
unchanged since): encoder 1->32->64 channels with 4x4 stride-2 convolutions, a 1x1
projection to the codes, an MLP of width ``hidden`` each way between z1 and z2, and a
decoder that mirrors the encoder (1x1 to 64 channels, then 4x4 stride-2 up to 32 and 1).

Because the decoder is purely convolutional, each z1 cell can only touch a fixed window
of the output; :func:`receptive_window` derives that window from the layer geometry, so
tests can check it for any weights (a cell's change never leaves its window by
construction; whether it stays inside the cell's own 4x4 patch is what the locality
experiment measures).

Training, as in both published recipes: z1 and z2 are relaxed Gumbel-softmax samples at
temperature tau (never hard), the prior over z1 is predicted from the z2 *sample*, and

    loss = w * (recon_weight * recon + kl_weight * KL(q(z1|x) || p(z1|z2))
                + kl_z2_weight * KL(q(z2|z1) || uniform)) + class_weight * CE(z2, label)

with w = min(1, epoch / warmup_epochs) (1 without warm-up) and every term either a mean
(per pixel, per cell) or a per-image sum (``reduction``), see :class:`SpatialLossConfig`.
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
REDUCTIONS = ("mean", "sum")


@dataclass
class SpatialRGMConfig:
    """The config's ``model`` block (no defaults: config.yaml has them)."""

    codes: int  # categories per z1 cell
    classes: int  # z2 concepts
    channels1: int  # encoder's first convolution; the decoder's last hidden layer mirrors it
    channels2: int  # encoder's second convolution; the decoder's 1x1 input layer mirrors it
    hidden: int  # width of the MLPs z1 -> z2 (enc2) and z2 -> prior over z1 (dec2)

    def __post_init__(self) -> None:
        for name in ("classes", "channels1", "channels2", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.codes < 2:
            raise ValueError(f"codes must be >= 2 (a code must be changeable), got {self.codes}")


@dataclass
class SpatialLossConfig:
    """A recipe's ``loss`` block: the weights of the terms, how they are reduced, the warm-up.

    ``reduction="mean"``: pixel MSE averaged over pixels, KL(z1) averaged over cells (seed
    001's notebook); ``"sum"``: both summed over an image, then averaged over the batch
    (the origin repository's MNISTExperiment). KL(z2) is per image either way.
    ``warmup_epochs`` k > 0 scales the reconstruction and KL terms by min(1, epoch / k)
    with epoch counted from 0, so the first epoch trains the classifier alone.
    """

    recon_weight: float
    class_weight: float
    kl_weight: float
    kl_z2_weight: float
    reduction: str
    warmup_epochs: int

    def __post_init__(self) -> None:
        for name in ("recon_weight", "class_weight", "kl_weight", "kl_z2_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def vae_weight(self, epoch: int) -> float:
        """Weight of the reconstruction and KL terms in epoch ``epoch`` (counted from 0)."""
        return 1.0 if self.warmup_epochs == 0 else min(1.0, epoch / self.warmup_epochs)


@dataclass
class GumbelConfig:
    """A recipe's ``gumbel`` block: the relaxation temperature, stepped once per epoch
    linearly from ``tau_start`` (epoch 0) towards ``tau_end`` (reached after the last epoch),
    as the origin repository does with 1.0 -> 0.5; equal values keep it constant."""

    tau_start: float
    tau_end: float

    def __post_init__(self) -> None:
        if self.tau_start <= 0 or self.tau_end <= 0:
            raise ValueError(f"Gumbel temperatures must be positive, got {self.tau_start}, {self.tau_end}")

    def tau(self, epoch: int, epochs: int) -> float:
        """Temperature during epoch ``epoch`` (from 0) of ``epochs``."""
        if epochs < 1 or not 0 <= epoch < epochs:
            raise ValueError(f"epoch {epoch} outside a run of {epochs} epochs")
        return float(self.tau_start + (self.tau_end - self.tau_start) * epoch / epochs)


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
            nn.Flatten(), nn.Linear(c.codes * GRID * GRID, c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, c.classes),
        )
        self.dec2 = nn.Sequential(
            nn.Linear(c.classes, c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, c.codes * GRID * GRID),
        )
        self.dec1 = nn.Sequential(
            nn.ConvTranspose2d(c.codes, c.channels2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c.channels2, c.channels1, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c.channels1, 1, 4, 2, 1), nn.Sigmoid(),
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
        """z2 logits from z1 codes (flattened, so any memory layout works)."""
        return self.enc2(z1.contiguous())

    def forward(self, x: torch.Tensor, tau: float) -> dict[str, torch.Tensor]:
        """Training pass: relaxed Gumbel-softmax samples of z1 (over the code axis) and of z2."""
        logits = self.z1_logits(x)
        z1 = F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)
        z2_logits = self.classify(z1)
        z2 = F.gumbel_softmax(z2_logits, tau=tau, hard=False, dim=1)
        return {"z1_logits": logits, "z1": z1, "z2_logits": z2_logits, "prior_logits": self.z1_prior_logits(z2),
                "recon": self.decode(z1)}

    @torch.no_grad()
    def encode_hard(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Evaluation pass: z1 = argmax code per cell (one-hot), z2 and the reconstruction from it."""
        logits = self.z1_logits(x)
        codes = logits.argmax(dim=1)
        z1 = one_hot_codes(codes, self.config.codes).to(logits.device)
        return {"codes": codes, "z1": z1, "z2_logits": self.classify(z1), "recon": self.decode(z1)}


def one_hot_codes(codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """(N, 7, 7) integer codes -> (N, codes, 7, 7) float one-hot."""
    return F.one_hot(codes.long(), num_codes).permute(0, 3, 1, 2).float()


def categorical_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """KL(q || p) in nats between categoricals on dim 1, per position: shape without dim 1.

    Computed from log-softmax. (Seed 001's notebook adds 1e-8 to both probabilities
    before the log; that differs only where p(z1|z2) < 1e-8, where it caps the penalty.)
    """
    log_q = F.log_softmax(q_logits, dim=1)
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=1)


def loss_terms(model: SpatialRGM, x: torch.Tensor, y: torch.Tensor, tau: float, loss: SpatialLossConfig,
               vae_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The training loss of one batch and its terms (each reduced as ``loss.reduction`` says)."""
    out = model(x, tau=tau)
    per_image = loss.reduction == "sum"
    n = x.shape[0]
    squared = (out["recon"] - x) ** 2
    kl_cells = categorical_kl(out["z1_logits"], out["prior_logits"])  # (N, 7, 7)
    recon = squared.sum() / n if per_image else squared.mean()
    kl = kl_cells.sum() / n if per_image else kl_cells.mean()
    log_q2 = F.log_softmax(out["z2_logits"], dim=1)
    kl_z2 = (log_q2.exp() * (log_q2 + math.log(model.config.classes))).sum(dim=1).mean()
    cls = F.cross_entropy(out["z2_logits"], y)
    total = (vae_weight * (loss.recon_weight * recon + loss.kl_weight * kl + loss.kl_z2_weight * kl_z2)
             + loss.class_weight * cls)
    return {"loss": total, "recon": recon, "class": cls, "kl": kl, "kl_z2": kl_z2}


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
