"""RG-Flow (Hu, Wu, Li, You, arXiv 2010.00029): a MERA-structured Real NVP flow.

An L x L image (L = 32, kernel K = 4) is transformed level by level. Level h has two
sublayers of K x K blocks with dilation 2^h and stride K * 2^h; the second sublayer is
shifted by K * 2^h / 2 in both directions and blocks wrap around the edges. Level h
therefore touches only pixels whose row and column are multiples of 2^h, and the sites
it does not hand on to level h + 1 (not both multiples of 2^(h+1)) are its latents.

Every block (C * K * K = 48 numbers) goes through Real NVP couplings that condition on
a K x K checkerboard half and update the other half, then the reverse; all blocks of a
sublayer share weights. The coupling nets are residual MLPs with learnable-beta Swish
and weight-normalised Linear layers, and a zero-initialised output scale, so the flow
starts as the identity.

Speed notes (the maths is the one of the reference design, the arithmetic is not):
the reference feeds the masked 48-vector to each net and masks the output; here a net
reads only the 24 conditioning numbers and writes only the 24 it updates. Because the
masked inputs are exact zeros (and Swish(0) = 0) this is the same function with the
same parameters, at half the cost of the first and last Linear layers. Blocks are
gathered and scattered with precomputed flat indices, and no activation checkpointing
is used (it trades compute for memory the small models do not need).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOGIT_CONSTRAINT = 0.9  # pixels are squeezed into [0.05, 0.95] before the logit
SWISH_GAIN = 2.81  # variance gain of Swish, used for the uniform weight init


@dataclass
class RGFlowConfig:
    # Coupling layers per sublayer (two sublayers per level, finest level first); a
    # list of one entry per level is expanded to both of its sublayers, one entry to all.
    couplings: Sequence[int]
    hidden: int
    res_blocks: int
    mlp_layers: int  # hidden Linear layers inside one residual block
    prior: str  # laplace (unit variance) or gaussian
    # The geometry of the data (not config keys: fixed by the datasets, 32x32 RGB, and the
    # reference design's 4x4 blocks).
    image_size: int = 32
    channels: int = 3
    kernel: int = 4

    def __post_init__(self) -> None:
        if self.prior not in ("laplace", "gaussian"):
            raise ValueError(f"prior must be 'laplace' or 'gaussian', got {self.prior!r}")
        if self.image_size % self.kernel or (self.image_size // self.kernel) & (self.image_size // self.kernel - 1):
            raise ValueError(f"image_size / kernel must be a power of two, got {self.image_size}/{self.kernel}")
        if self.kernel % 2:
            raise ValueError(f"kernel must be even (checkerboard halves, half-block shift), got {self.kernel}")
        couplings = [int(c) for c in (self.couplings if isinstance(self.couplings, (list, tuple)) else [self.couplings])]
        if len(couplings) == 1:
            couplings = couplings * self.n_sublayers
        elif len(couplings) == self.n_levels:
            couplings = [c for c in couplings for _ in range(2)]
        if len(couplings) != self.n_sublayers or min(couplings) < 1:
            raise ValueError(f"couplings needs 1, {self.n_levels} or {self.n_sublayers} positive entries, "
                             f"got {self.couplings}")
        self.couplings = tuple(couplings)
        for name in ("hidden", "res_blocks", "mlp_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def n_levels(self) -> int:
        return int(math.log2(self.image_size // self.kernel)) + 1

    @property
    def n_sublayers(self) -> int:
        return 2 * self.n_levels

    @property
    def dims(self) -> int:
        return self.channels * self.image_size**2

    def to_dict(self) -> dict:
        out = asdict(self)
        out["couplings"] = list(self.couplings)
        return out


# --------------------------------------------------------------------------- geometry

def block_pixels(size: int, kernel: int, level: int, shifted: bool) -> np.ndarray:
    """(n_blocks, kernel * kernel) flat pixel indices (row * size + col) of one sublayer.

    Pixel (u, v) of block (bi, bj) sits at row offset + stride * bi + dilation * u
    (mod size), and likewise for columns, with dilation 2^level, stride kernel * 2^level
    and offset kernel * 2^level / 2 for the shifted sublayer.
    """
    dilation = 2**level
    stride = kernel * dilation
    offset = stride // 2 if shifted else 0
    n = size // stride
    if n < 1:
        raise ValueError(f"level {level} does not fit an image of size {size} with kernel {kernel}")
    starts = offset + stride * np.arange(n)
    taps = dilation * np.arange(kernel)
    coords = (starts[:, None] + taps[None, :]) % size  # (n, kernel)
    rows = coords[:, None, :, None]
    cols = coords[None, :, None, :]
    flat = rows * size + cols  # (n, n, kernel, kernel)
    return flat.reshape(n * n, kernel * kernel)


def latent_levels(size: int = 32, kernel: int = 4) -> np.ndarray:
    """(size, size) map of the level whose latent each pixel is: the last level touching it."""
    levels = np.full(size * size, -1, dtype=np.int64)
    for level in range(int(math.log2(size // kernel)) + 1):
        for shifted in (False, True):
            levels[block_pixels(size, kernel, level, shifted).ravel()] = level
    return levels.reshape(size, size)


def checkerboard(kernel: int) -> np.ndarray:
    """Boolean K x K mask: True where (u + v) is even (the half conditioned on first)."""
    u, v = np.meshgrid(np.arange(kernel), np.arange(kernel), indexing="ij")
    return (u + v) % 2 == 0


# --------------------------------------------------------------------------- layers

class Swish(nn.Module):
    """x * sigmoid(beta * x) with a learnable beta per feature."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(features))


class WNLinear(nn.Module):
    """Weight-normalised Linear: W = g * v / ||v|| (row norm), uniform Swish-gain init."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        bound = math.sqrt(SWISH_GAIN * 3 / fan_in)
        v = torch.empty(fan_out, fan_in).uniform_(-bound, bound)
        self.v = nn.Parameter(v)
        self.g = nn.Parameter(v.norm(dim=1).clone())
        self.bias = nn.Parameter(torch.zeros(fan_out))

    def weight(self) -> torch.Tensor:
        return self.v * (self.g / self.v.norm(dim=1)).unsqueeze(1)


class ResidualMLP(nn.Module):
    """Residual MLP on a width-D vector: x <- (x + f(x)) / sqrt(2) per block, with
    f = [Swish, WNLinear] * (mlp_layers + 1); then y = scale * x (scale starts at 0),
    followed by tanh for the log-scale net.

    ``forward(x, inp, out)`` takes only the entries ``inp`` of a D-vector whose other
    entries are zero, and returns only the entries ``out`` of the result.
    """

    def __init__(self, width: int, hidden: int, res_blocks: int, mlp_layers: int, tanh: bool) -> None:
        super().__init__()
        widths = [width] + [hidden] * mlp_layers + [width]
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList([Swish(widths[i]), WNLinear(widths[i], widths[i + 1])]) for i in range(len(widths) - 1)
            )
            for _ in range(res_blocks)
        )
        self.scale = nn.Parameter(torch.zeros(width))
        self.tanh = tanh

    def forward(self, x: torch.Tensor, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        state, cols = x, inp  # cols: which D-entries `state` holds (None = all)
        last_block = len(self.blocks) - 1
        for b, block in enumerate(self.blocks):
            h = state
            for j, pair in enumerate(block):
                swish, linear = pair[0], pair[1]
                beta, weight, bias = swish.beta, linear.weight(), linear.bias
                if j == 0 and cols is not None:  # the zero inputs contribute nothing
                    beta, weight = beta[cols], weight[:, cols]
                if j == len(block) - 1 and b == last_block:  # only the updated half is read
                    weight, bias = weight[out], bias[out]
                h = F.linear(h * torch.sigmoid(beta * h), weight, bias)
            if b == last_block:
                if cols is None:
                    state = (state[:, out] + h) * (1 / math.sqrt(2))
                else:  # one block: the input is zero at `out` (inp and out are disjoint halves)
                    state = h * (1 / math.sqrt(2))
            else:
                if cols is not None:
                    full = h.new_zeros(h.shape[0], h.shape[1])
                    state = full.index_copy(1, cols, state)
                state = (state + h) * (1 / math.sqrt(2))
                cols = None
        y = self.scale[out] * state
        return torch.tanh(y) if self.tanh else y


class Coupling(nn.Module):
    """One Real NVP layer on a block: update half B given half A, then A given B.

    The same s / t nets serve both steps (they see a different half of their input),
    as in the reference design.
    """

    def __init__(self, width: int, hidden: int, res_blocks: int, mlp_layers: int) -> None:
        super().__init__()
        self.s = ResidualMLP(width, hidden, res_blocks, mlp_layers, tanh=True)
        self.t = ResidualMLP(width, hidden, res_blocks, mlp_layers, tanh=False)

    def forward(self, a, b, idx_a, idx_b):
        s = self.s(a, idx_a, idx_b)
        b = b * torch.exp(s) + self.t(a, idx_a, idx_b)
        ldj = s.sum(1)
        s = self.s(b, idx_b, idx_a)
        a = a * torch.exp(s) + self.t(b, idx_b, idx_a)
        return a, b, ldj + s.sum(1)

    def inverse(self, a, b, idx_a, idx_b):
        s = self.s(b, idx_b, idx_a)
        a = (a - self.t(b, idx_b, idx_a)) * torch.exp(-s)
        ldj = -s.sum(1)
        s = self.s(a, idx_a, idx_b)
        b = (b - self.t(a, idx_a, idx_b)) * torch.exp(-s)
        return a, b, ldj - s.sum(1)


class Sublayer(nn.Module):
    """All blocks of one sublayer (shared weights), gathered from the flat image."""

    def __init__(self, config: RGFlowConfig, level: int, shifted: bool, n_couplings: int) -> None:
        super().__init__()
        size, k, c = config.image_size, config.kernel, config.channels
        pixels = block_pixels(size, k, level, shifted)  # (nb, K*K)
        board = checkerboard(k).ravel()
        # Block vector layout is (channel, u, v); half A = checkerboard-even sites.
        flat = (np.arange(c)[None, :, None] * size * size + pixels[:, None, :])  # (nb, C, K*K)
        half_a = flat[:, :, board].reshape(len(pixels), -1)
        half_b = flat[:, :, ~board].reshape(len(pixels), -1)
        pos = np.arange(c * k * k).reshape(c, k * k)
        self.register_buffer("gather_a", torch.as_tensor(half_a.ravel()), persistent=False)
        self.register_buffer("gather_b", torch.as_tensor(half_b.ravel()), persistent=False)
        self.register_buffer("idx_a", torch.as_tensor(pos[:, board].ravel()), persistent=False)
        self.register_buffer("idx_b", torch.as_tensor(pos[:, ~board].ravel()), persistent=False)
        self.half = half_a.shape[1]
        self.level = level
        self.couplings = nn.ModuleList(
            Coupling(c * k * k, config.hidden, config.res_blocks, config.mlp_layers) for _ in range(n_couplings)
        )

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.gather_a].reshape(-1, self.half), x[:, self.gather_b].reshape(-1, self.half)

    def _merge(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        x = x.index_copy(1, self.gather_a, a.reshape(batch, -1))
        return x.index_copy(1, self.gather_b, b.reshape(batch, -1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._split(x)
        ldj = a.new_zeros(a.shape[0])
        for coupling in self.couplings:
            a, b, step = coupling(a, b, self.idx_a, self.idx_b)
            ldj = ldj + step
        return self._merge(x, a, b), ldj.view(x.shape[0], -1).sum(1)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._split(z)
        ldj = a.new_zeros(a.shape[0])
        for coupling in reversed(self.couplings):
            a, b, step = coupling.inverse(a, b, self.idx_a, self.idx_b)
            ldj = ldj + step
        return self._merge(z, a, b), ldj.view(z.shape[0], -1).sum(1)


class RGFlow(nn.Module):
    """The MERA flow x (logit space, (B, C, L, L)) <-> z with an i.i.d. prior."""

    def __init__(self, config: RGFlowConfig) -> None:
        super().__init__()
        self.config = config
        self.sublayers = nn.ModuleList(
            Sublayer(config, level, shifted, config.couplings[2 * level + shifted])
            for level in range(config.n_levels)
            for shifted in (0, 1)
        )
        self.register_buffer("levels", torch.as_tensor(latent_levels(config.image_size, config.kernel)),
                             persistent=False)

    # -- bijection
    def forward(self, x: torch.Tensor, stop_level: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> z and log|det dz/dx| per image; ``stop_level`` stops after that level."""
        shape = x.shape
        h = x.reshape(shape[0], -1)
        ldj = h.new_zeros(shape[0])
        for layer in self.sublayers:
            if stop_level is not None and layer.level > stop_level:
                break
            h, step = layer(h)
            ldj = ldj + step
        return h.view(shape), ldj

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> x and log|det dx/dz| per image."""
        shape = z.shape
        h = z.reshape(shape[0], -1)
        ldj = h.new_zeros(shape[0])
        for layer in reversed(self.sublayers):
            h, step = layer.inverse(h)
            ldj = ldj + step
        return h.view(shape), ldj

    # -- prior
    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(z.shape[0], -1)
        if self.config.prior == "laplace":
            b = 1 / math.sqrt(2)  # unit variance
            return (-z.abs() / b - math.log(2 * b)).sum(1)
        return (-0.5 * z * z - 0.5 * math.log(2 * math.pi)).sum(1)

    def sample_prior(self, n: int, temperature: float | torch.Tensor = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents (n, C, L, L) at a temperature (a scalar or a (C, L, L)-broadcastable map)."""
        c, size = self.config.channels, self.config.image_size
        device = self.levels.device
        if self.config.prior == "laplace":
            u = torch.rand(n, c, size, size, generator=generator, device=device) * 2 - 1
            u = u.clamp(-1 + 1e-7, 1 - 1e-7)  # keeps log1p(-|u|) finite
            z = -u.sign() * torch.log1p(-u.abs()) / math.sqrt(2)
        else:
            z = torch.randn(n, c, size, size, generator=generator, device=device)
        return z * temperature

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) in logit space, nats per image."""
        z, ldj = self(y)
        return self.prior_log_prob(z) + ldj


# --------------------------------------------------------------------------- data transform

def to_logit(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[0, 1] -> logit(0.05 + 0.9 x) and its log|det| per image."""
    p = (1 - LOGIT_CONSTRAINT) / 2 + LOGIT_CONSTRAINT * x01
    y = torch.log(p) - torch.log1p(-p)
    ldj = (math.log(LOGIT_CONSTRAINT) - torch.log(p) - torch.log1p(-p)).reshape(x01.shape[0], -1).sum(1)
    return y, ldj


def from_logit(y: torch.Tensor) -> torch.Tensor:
    """Logit space -> [0, 1] (clamped: samples may leave the training range)."""
    return ((torch.sigmoid(y) - (1 - LOGIT_CONSTRAINT) / 2) / LOGIT_CONSTRAINT).clamp(0, 1)


def dequantise(images: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (B, L, L, C) -> float (B, C, L, L) in [0, 1): (k + u) / 256, u ~ U[0, 1)
    (``noise``: a given u, e.g. seeded; drawn from torch's global generator when None)."""
    x = images.permute(0, 3, 1, 2).float()
    if noise is None:
        noise = torch.rand(x.shape, device=x.device)
    return (x + noise) / 256


def bits_per_dim(nll: torch.Tensor | float, dims: int) -> float:
    """(NLL / D + ln 256) / ln 2: bits per dimension of the discrete 8-bit image."""
    mean = float(nll.mean()) if isinstance(nll, torch.Tensor) else float(nll)
    return (mean / dims + math.log(256)) / math.log(2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(config: RGFlowConfig | dict) -> RGFlow:
    if isinstance(config, dict):
        config = RGFlowConfig(**config)
    return RGFlow(config)
