"""Lattice Potts energy-based models of 4-level MNIST (seed 003) and their likelihood tools.

Both models share one convention, p(x) = exp(-E(x)) / Z:

- ``PottsModel`` (``potts``): E(x) = -sum_i b_i[x_i] - w_h #equal horizontal neighbours
  - w_v #equal vertical neighbours; 28*28*4 + 2 = 3,138 parameters (the seed's model).
  With ``classes`` = 10 it is ``potts_cond``: one bias field per digit, shared
  couplings, E(x | y).
- ``IndependentModel``: the bias-only model fitted by counting; its NLL is exact and it
  is the base distribution of annealed importance sampling (AIS).

The categorical RBMs live in ``rgbench.models.rbm``; PCD training of both in
``rgbench.models.pcd``; the samplers in ``rgbench.models.potts_samplers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.data.preprocess import LEVELS
from rgbench.models.potts_samplers import CheckerboardGibbs


# ----------------------------------------------------------------------------- models

@dataclass
class PottsConfig:
    height: int = 28
    width: int = 28
    levels: int = LEVELS
    classes: int = 1  # 10 for the class-conditional potts_cond


class PottsModel(nn.Module):
    """Lattice Potts model; ``classes`` > 1 gives one bias field per class (E(x | y))."""

    def __init__(self, config: PottsConfig) -> None:
        super().__init__()
        self.config = config
        self.bias = nn.Parameter(torch.zeros(config.classes, config.height, config.width, config.levels))
        self.coupling = nn.Parameter(torch.zeros(2))  # (w_h, w_v)

    @property
    def conditional(self) -> bool:
        return self.config.classes > 1

    def parameter_count(self) -> int:
        """Free parameters: every bias field and the two couplings."""
        return int(sum(p.numel() for p in self.parameters()))

    def _bias_of(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        if self.conditional:
            if labels is None:
                raise ValueError("potts_cond needs labels")
            return self.bias[labels.long()]
        return self.bias[0].expand(n, -1, -1, -1)

    def energy(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """E(x) (or E(x | y)) per image, (N,); x is (N, H, W) levels."""
        x = x.long()
        # flat sums: torch reduces a flattened axis several times faster than two axes of a bool
        field = torch.gather(self._bias_of(len(x), labels), -1, x.unsqueeze(-1)).flatten(1).sum(1)
        same_h = (x[:, :, 1:] == x[:, :, :-1]).flatten(1).sum(1).to(field.dtype)
        same_v = (x[:, 1:, :] == x[:, :-1, :]).flatten(1).sum(1).to(field.dtype)
        return -(field + self.coupling[0] * same_h + self.coupling[1] * same_v)

    @torch.no_grad()
    def statistics(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sufficient statistics summed over a batch: level counts per (class, site) as
        (K, H, W, L), and the numbers of equal horizontal and vertical pairs (2,). -E is
        linear in them, so sum_n E(x_n) = -(bias * counts).sum() - coupling . pairs."""
        cfg = self.config
        x = x.long()
        n = len(x)
        k = labels.long() if self.conditional else torch.zeros(n, dtype=torch.long, device=x.device)
        sites = cfg.height * cfg.width
        index = (k[:, None] * sites + torch.arange(sites, device=x.device)[None]) * cfg.levels + x.reshape(n, -1)
        counts = torch.bincount(index.reshape(-1), minlength=cfg.classes * sites * cfg.levels)
        pairs = torch.stack([(x[:, :, 1:] == x[:, :, :-1]).sum(), (x[:, 1:, :] == x[:, :-1, :]).sum()])
        return counts.view(cfg.classes, cfg.height, cfg.width, cfg.levels).to(self.bias.dtype), pairs.to(self.bias.dtype)

    def mean_energy_difference(self, x: torch.Tensor, x_labels: torch.Tensor | None, negatives: torch.Tensor,
                               negative_labels: torch.Tensor | None) -> torch.Tensor:
        """mean E(x) - mean E(negatives) from sufficient statistics: the PCD surrogate, whose
        gradient (chain statistics minus data statistics) is cheap because it is linear."""
        counts_x, pairs_x = self.statistics(x, x_labels)
        counts_n, pairs_n = self.statistics(negatives, negative_labels)
        counts = counts_x / len(x) - counts_n / len(negatives)
        pairs = pairs_x / len(x) - pairs_n / len(negatives)
        return -(self.bias * counts).sum() - (self.coupling * pairs).sum()

    def conditional_log_probs(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_i = l | x_-i) for every site, (N, H, W, L)."""
        x = x.long()
        onehot = F.one_hot(x, self.config.levels).to(self.bias.dtype)
        horizontal = torch.zeros_like(onehot)
        horizontal[:, :, 1:] += onehot[:, :, :-1]
        horizontal[:, :, :-1] += onehot[:, :, 1:]
        vertical = torch.zeros_like(onehot)
        vertical[:, 1:] += onehot[:, :-1]
        vertical[:, :-1] += onehot[:, 1:]
        logits = self._bias_of(len(x), labels) + self.coupling[0] * horizontal + self.coupling[1] * vertical
        return torch.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def pseudo_log_likelihood(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """sum_i log p(x_i | x_-i) per image, (N,) (exact, no sampling)."""
        logp = self.conditional_log_probs(x, labels)
        return torch.gather(logp, -1, x.long().unsqueeze(-1)).squeeze(-1).sum((1, 2))

    def sampler_parameters(self) -> tuple[torch.Tensor, float, float]:
        """(bias (K, H, W, L), w_h, w_v) as the sampler needs them: detached, current values."""
        w_h, w_v = self.coupling.detach().tolist()
        return self.bias.detach(), w_h, w_v


def sample_categorical(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of (..., L) logits by inverse CDF (one uniform per draw), uint8."""
    # unnormalised running sums with one add per level: torch's cumsum and softmax over a
    # last axis of length 4 cost several times more than these few flat passes
    weights = (logits - logits.max(dim=-1, keepdim=True).values).exp_()
    running = weights[..., 0].clone()
    u = torch.rand(running.shape, generator=generator, device=logits.device)
    levels = logits.shape[-1]
    partial = [running.clone()]
    for level in range(1, levels):
        running += weights[..., level]
        if level < levels - 1:
            partial.append(running.clone())
    u *= running
    out = torch.zeros(running.shape, dtype=torch.uint8, device=logits.device)
    for threshold in partial:
        out += u > threshold
    return out


# ----------------------------------------------------------------------------- independent model

class IndependentModel:
    """Bias-only model p(x) = prod_i p_i(x_i) fitted by counting with add-``alpha`` smoothing.

    ``classes`` > 1 fits one such model per class (the AIS base of potts_cond).
    """

    def __init__(self, log_probs: np.ndarray) -> None:
        self.log_probs = np.asarray(log_probs, dtype=np.float64)  # (K, H, W, L)

    @classmethod
    def fit(cls, levels_data: np.ndarray, labels: np.ndarray | None = None, classes: int = 1,
            alpha: float = 1.0, levels: int = LEVELS) -> "IndependentModel":
        data = np.asarray(levels_data)
        if data.ndim != 3:
            raise ValueError(f"expected (N, H, W) levels, got shape {data.shape}")
        if data.size and (data.min() < 0 or data.max() >= levels):
            raise ValueError(f"levels must lie in [0, {levels})")
        if alpha <= 0:
            raise ValueError("alpha must be positive (a zero count would give -inf log-probability)")
        labels = np.zeros(len(data), dtype=np.int64) if classes == 1 else np.asarray(labels)
        log_probs = np.empty((classes,) + data.shape[1:] + (levels,))
        for k in range(classes):
            subset = data[labels == k]
            counts = np.stack([(subset == level).sum(0) for level in range(levels)], axis=-1).astype(np.float64)
            log_probs[k] = np.log(counts + alpha) - np.log(len(subset) + levels * alpha)
        return cls(log_probs)

    def log_likelihood(self, levels_data: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Exact log p(x) (or log p(x | y)) per image in nats."""
        data = np.asarray(levels_data).astype(np.int64)
        k = np.zeros(len(data), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        if self.log_probs.shape[0] > 1 and labels is None:
            raise ValueError("a class-conditional independent model needs labels")
        h, w = data.shape[1:]
        rows = np.arange(h)[None, :, None]
        cols = np.arange(w)[None, None, :]
        return self.log_probs[k[:, None, None], rows, cols, data].sum((1, 2))

    def nll(self, levels_data: np.ndarray, labels: np.ndarray | None = None) -> float:
        return float(-self.log_likelihood(levels_data, labels).mean())

    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        logp = torch.as_tensor(self.log_probs, dtype=torch.float32)
        logits = logp[labels.long()] if labels is not None else logp[0].expand(n, -1, -1, -1)
        return sample_categorical(logits, generator)

    def as_potts(self) -> PottsModel:
        """The same distribution as a PottsModel (couplings 0, log Z = 0): the PCD start."""
        k, h, w, levels = self.log_probs.shape
        model = PottsModel(PottsConfig(height=h, width=w, levels=levels, classes=k))
        with torch.no_grad():
            model.bias.copy_(torch.as_tensor(self.log_probs, dtype=torch.float32))
        return model


# ----------------------------------------------------------------------------- AIS

@dataclass
class AISResult:
    log_z: float  # log Z0 + log of the mean importance weight
    log_z_se: float  # delta-method standard error; meaningless when ess is small
    log_weights: np.ndarray
    ess: float  # effective sample size of the weights


def summarise_log_weights(log_w: np.ndarray, log_z_base: float = 0.0) -> AISResult:
    """log Z-hat = log Z0 + log mean w, with its delta-method error and the weights' ESS."""
    log_w = np.asarray(log_w, dtype=np.float64)
    top = log_w.max()
    w = np.exp(log_w - top)
    log_z = float(log_z_base + top + np.log(w.mean()))
    # se(log mean w) ~ sd(w) / (mean(w) sqrt(n)) by the delta method
    se = float(w.std(ddof=1) / (w.mean() * math.sqrt(len(w)))) if len(w) > 1 else float("nan")
    return AISResult(log_z, se, log_w, float(w.sum() ** 2 / (w**2).sum()))


class _LatticePath:
    """The annealing path from an independent model p0 to one class of a lattice model:
    f_beta(x) = log p0(x) + beta g(x) with g(x) = -E(x) - log p0(x), each step moved by a
    checkerboard sweep of the Potts model with bias (1 - beta) log p0 + beta b and
    couplings beta w (log Z0 = 0: p0 is normalised)."""

    def __init__(self, model: PottsModel, base: IndependentModel, label: int | None,
                 sampler: CheckerboardGibbs | None) -> None:
        cfg = model.config
        k = 0 if label is None else int(label)
        self.base = np.asarray(base.log_probs[k if base.log_probs.shape[0] > 1 else 0], dtype=np.float64)
        bias, self.w_h, self.w_v = model.sampler_parameters()
        self.bias = bias[k].double().numpy()
        self.delta = self.bias - self.base
        self.sampler = sampler or CheckerboardGibbs(cfg.height, cfg.width)

    def g(self, padded: torch.Tensor) -> np.ndarray:
        return self.sampler.log_potential(padded, self.delta, self.w_h, self.w_v)

    def move(self, padded: torch.Tensor, beta: float, generator: torch.Generator | None) -> None:
        field = torch.from_numpy((1.0 - beta) * self.base + beta * self.bias)
        self.sampler.set_parameters(field.unsqueeze(0), beta * self.w_h, beta * self.w_v)
        self.sampler.sweep(padded, 1, generator)


@torch.no_grad()
def ais_potts(model: PottsModel, base: IndependentModel, chains: int, betas: np.ndarray,
              generator: torch.Generator | None = None, sampler: CheckerboardGibbs | None = None,
              label: int | None = None) -> AISResult:
    """log Z of a lattice model (class ``label`` of a conditional one) by AIS from ``base``."""
    path = _LatticePath(model, base, label, sampler)
    k = 0 if label is None else int(label)
    labels = torch.full((chains,), k, dtype=torch.long) if base.log_probs.shape[0] > 1 else None
    padded = path.sampler.pad(base.sample(chains, generator, labels=labels))
    log_w = np.zeros(chains)
    for previous, beta in zip(betas[:-1], betas[1:]):
        log_w += (beta - previous) * path.g(padded)
        path.move(padded, float(beta), generator)
    return summarise_log_weights(log_w)


@torch.no_grad()
def raise_potts(model: PottsModel, base: IndependentModel, images: torch.Tensor, betas: np.ndarray,
                generator: torch.Generator | None = None, sampler: CheckerboardGibbs | None = None,
                label: int | None = None) -> np.ndarray:
    """Reverse annealing (RAISE) from each image: a stochastic lower bound on log p(x)
    (log p(x | label) for a conditional model), -E(x) - sum_k (beta_k - beta_{k-1}) g(x_{k-1})
    with x_{k-1} drawn by the sweep at beta_k from x_k (checkerboard Gibbs is reversible)."""
    path = _LatticePath(model, base, label, sampler)
    padded = path.sampler.pad(images.to(torch.uint8))
    total = path.sampler.log_potential(padded, path.bias, path.w_h, path.w_v)
    for k in range(len(betas) - 1, 0, -1):
        path.move(padded, float(betas[k]), generator)
        total -= (betas[k] - betas[k - 1]) * path.g(padded)
    return total


# ----------------------------------------------------------------------------- diagnostics

def integrated_autocorrelation_time(trace: np.ndarray, window_factor: float = 5.0) -> float:
    """Integrated autocorrelation time of (T,) or (chains, T) series, with Sokal's
    automatic window (smallest M with M >= window_factor * tau(M)); chains share one
    autocovariance estimate."""
    x = np.atleast_2d(np.asarray(trace, dtype=np.float64))
    x = x - x.mean(axis=1, keepdims=True)
    t = x.shape[1]
    if t < 4:
        raise ValueError("need at least 4 steps to estimate an autocorrelation time")
    size = 1 << (2 * t - 1).bit_length()
    spectrum = np.fft.rfft(x, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :t].mean(axis=0)
    if acov[0] <= 0:
        return float("nan")  # a constant series
    rho = acov / acov[0]
    tau = 2.0 * np.cumsum(rho) - 1.0
    for m in range(1, t):
        if m >= window_factor * tau[m]:
            return float(tau[m])
    return float(tau[-1])
