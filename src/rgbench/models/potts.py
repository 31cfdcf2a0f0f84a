"""Potts energy-based models of 4-level MNIST (seed 003) and their likelihood tools.

Three models share one convention, p(x) = exp(-E(x)) / Z:

- ``PottsModel`` (``potts``): E(x) = -sum_i b_i[x_i] - w_h #equal horizontal neighbours
  - w_v #equal vertical neighbours; 28*28*4 + 2 = 3,138 parameters. With ``classes`` = 10
  it is ``potts_cond``: one bias field per digit, shared couplings, E(x | y).
- ``PottsRBM`` (``potts_rbm``): categorical visible units and H binary hidden units;
  E(x) here is the free energy -sum_i b_i[x_i] - sum_j softplus(c_j + sum_i W_j,i[x_i]).
- ``IndependentModel``: the bias-only model fitted by counting; its NLL is exact and it
  is the base distribution of annealed importance sampling (AIS).

Training is persistent contrastive divergence (PCD-k; CD-k as an option) in
``rgbench.experiments.potts_ebm``; negatives come from the samplers in
``rgbench.models.potts_samplers``, rebuilt from the current parameters at every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.models.potts_samplers import CheckerboardGibbs

LEVELS = 4


# ----------------------------------------------------------------------------- models

@dataclass
class PottsConfig:
    height: int = 28
    width: int = 28
    levels: int = LEVELS
    classes: int = 1  # 10 for the class-conditional potts_cond


class PottsModel(nn.Module):
    """Grid Potts model; ``classes`` > 1 gives one bias field per class (E(x | y))."""

    def __init__(self, config: PottsConfig) -> None:
        super().__init__()
        self.config = config
        self.bias = nn.Parameter(torch.zeros(config.classes, config.height, config.width, config.levels))
        self.coupling = nn.Parameter(torch.zeros(2))  # (w_h, w_v)

    @property
    def conditional(self) -> bool:
        return self.config.classes > 1

    def _bias_of(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        if self.conditional:
            if labels is None:
                raise ValueError("potts_cond needs labels")
            return self.bias[labels.long()]
        return self.bias[0].expand(n, -1, -1, -1)

    def energy(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """E(x) (or E(x | y)) per image, (N,); x is (N, H, W) levels."""
        x = x.long()
        field = torch.gather(self._bias_of(len(x), labels), -1, x.unsqueeze(-1)).squeeze(-1).sum((1, 2))
        same_h = (x[:, :, 1:] == x[:, :, :-1]).sum((1, 2)).to(field.dtype)
        same_v = (x[:, 1:, :] == x[:, :-1, :]).sum((1, 2)).to(field.dtype)
        return -(field + self.coupling[0] * same_h + self.coupling[1] * same_v)

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


@dataclass
class PottsRBMConfig:
    height: int = 28
    width: int = 28
    levels: int = LEVELS
    hidden: int = 256
    init_std: float = 0.01


class PottsRBM(nn.Module):
    """Categorical-visible, binary-hidden RBM, sampled in visible / hidden blocks."""

    def __init__(self, config: PottsRBMConfig) -> None:
        super().__init__()
        self.config = config
        sites = config.height * config.width
        self.bias = nn.Parameter(torch.zeros(sites, config.levels))
        self.hidden_bias = nn.Parameter(torch.zeros(config.hidden))
        # rows are (site, level) pairs: a visible configuration selects one row per site
        self.weight = nn.Parameter(torch.randn(sites * config.levels, config.hidden) * config.init_std)
        self.register_buffer("offsets", torch.arange(sites) * config.levels, persistent=False)

    conditional = False

    def _onehot(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x.long().reshape(len(x), -1), self.config.levels).to(self.weight.dtype)

    def hidden_activation(self, x: torch.Tensor) -> torch.Tensor:
        """c_j + sum_i W[(i, x_i), j]. Without gradients a gather-sum (embedding bag) is the
        cheapest; with gradients a one-hot matmul, whose backward is one dense GEMM (the
        embedding bag's scatter-add backward is slower on CPUs)."""
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self._onehot(x).flatten(1) @ self.weight + self.hidden_bias
        rows = x.long().reshape(len(x), -1) + self.offsets
        return F.embedding_bag(rows, self.weight, mode="sum") + self.hidden_bias

    def visible_field(self, x: torch.Tensor) -> torch.Tensor:
        """sum_i b_i[x_i], (N,)."""
        return (self._onehot(x) * self.bias).sum((1, 2))

    def energy(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Free energy F(x) = -log sum_h exp(-E(x, h)), (N,)."""
        return -(self.visible_field(x) + F.softplus(self.hidden_activation(x)).sum(1))

    @torch.no_grad()
    def gibbs(self, x: torch.Tensor, sweeps: int, generator: torch.Generator | None = None, beta: float = 1.0,
              base_logp: torch.Tensor | None = None) -> torch.Tensor:
        """Block Gibbs (all hidden, then all visible) on the beta-tempered joint
        (1 - beta) log p0(x) + beta (-E(x, h)); beta = 1 is the model itself."""
        shape = x.shape
        n, sites, levels = len(x), self.config.height * self.config.width, self.config.levels
        field = beta * self.bias
        if base_logp is not None and beta < 1.0:
            field = field + (1.0 - beta) * base_logp.reshape(sites, levels)
        for _ in range(sweeps):
            p_hidden = torch.sigmoid(beta * self.hidden_activation(x))
            h = (torch.rand(p_hidden.shape, generator=generator, device=x.device) < p_hidden).to(self.weight.dtype)
            logits = field + beta * (h @ self.weight.T).view(n, sites, levels)
            x = sample_categorical(logits, generator).view(shape)
        return x

    @torch.no_grad()
    def pseudo_log_likelihood(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                              site_chunk: int = 49) -> torch.Tensor:
        """sum_i log p(x_i | x_-i) per image from free-energy differences, (N,)."""
        n, sites, levels = len(x), self.config.height * self.config.width, self.config.levels
        flat = x.long().reshape(n, -1)
        act = self.hidden_activation(x)  # (N, Hd)
        w = self.weight.view(sites, levels, -1)  # (S, L, Hd)
        total = torch.zeros(n, dtype=self.weight.dtype, device=x.device)
        for start in range(0, sites, site_chunk):
            idx = torch.arange(start, min(start + site_chunk, sites), device=x.device)
            current = flat[:, idx]  # (N, s)
            w_sites = w[idx]  # (s, L, Hd)
            w_current = w_sites[torch.arange(len(idx), device=x.device)[None, :], current]  # (N, s, Hd)
            # activation with site i set to each level l: act - W[(i, x_i)] + W[(i, l)]
            changed = act[:, None, None, :] - w_current[:, :, None, :] + w_sites[None]
            neg_free = self.bias[idx][None] + F.softplus(changed).sum(-1)  # (N, s, L), up to a constant
            logp = torch.log_softmax(neg_free, dim=-1)
            total += torch.gather(logp, -1, current.unsqueeze(-1)).squeeze(-1).sum(1)
        return total


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
    log_z: float  # log of the mean importance weight (per class for a conditional model)
    log_z_se: float  # delta-method standard error of log_z
    log_weights: np.ndarray
    ess: float  # effective sample size of the weights


def _summarise(log_w: np.ndarray) -> AISResult:
    log_w = np.asarray(log_w, dtype=np.float64)
    m = log_w.max()
    w = np.exp(log_w - m)
    log_z = float(m + np.log(w.mean()))
    # se(log mean w) ~ sd(w) / (mean(w) sqrt(n)) by the delta method
    se = float(w.std(ddof=1) / (w.mean() * math.sqrt(len(w)))) if len(w) > 1 else float("nan")
    ess = float(w.sum() ** 2 / (w**2).sum())
    return AISResult(log_z, se, log_w, ess)


def beta_schedule(steps: int) -> np.ndarray:
    """Annealing temperatures 0 = b_0 < ... < b_steps = 1, denser near 0 where the
    independent base and the target differ most per unit beta."""
    if steps < 1:
        raise ValueError("AIS needs at least one step")
    t = np.linspace(0.0, 1.0, steps + 1)
    return t**2 * 0.5 + t * 0.5


@torch.no_grad()
def ais_potts(model: PottsModel, base: IndependentModel, chains: int, steps: int,
              generator: torch.Generator | None = None, sampler: CheckerboardGibbs | None = None,
              label: int | None = None) -> AISResult:
    """log Z of a Potts model (class ``label`` of a conditional one) by AIS from ``base``.

    Intermediate targets f_b(x) = (1 - b) log p0(x) - b E(x); each is again a Potts
    model (bias (1 - b) log p0 + b bias, couplings b w), moved by one block Gibbs sweep.
    log Z0 = 0 because the base is normalised.
    """
    cfg = model.config
    sampler = sampler or CheckerboardGibbs(cfg.height, cfg.width)
    k = 0 if label is None else int(label)
    base_logp = torch.as_tensor(base.log_probs[k if base.log_probs.shape[0] > 1 else 0], dtype=torch.float32)
    bias, w_h, w_v = model.sampler_parameters()
    bias = bias[k]
    labels = torch.full((chains,), k, dtype=torch.long) if model.conditional else None
    x = base.sample(chains, generator, labels=None if base.log_probs.shape[0] == 1 else
                    torch.full((chains,), k, dtype=torch.long))
    padded = sampler.pad(x)
    log_w = torch.zeros(chains, dtype=torch.float64)
    betas = beta_schedule(steps)
    flat_logp = base_logp.unsqueeze(0)
    for previous, beta in zip(betas[:-1], betas[1:]):
        x = sampler.unpad(padded)
        log_p0 = _independent_log_prob(x, flat_logp)
        log_w += (beta - previous) * (-model.energy(x, labels).double() - log_p0)
        sampler.set_parameters(((1 - beta) * base_logp + beta * bias).unsqueeze(0), beta * w_h, beta * w_v)
        sampler.sweep(padded, 1, generator)
    return _summarise(log_w.numpy())


def _independent_log_prob(x: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """log p0(x) for (N, H, W) levels under (1, H, W, L) site log-probabilities."""
    return torch.gather(log_probs.expand(len(x), -1, -1, -1), -1, x.long().unsqueeze(-1)).sum((1, 2, 3)).double()


@torch.no_grad()
def ais_rbm(model: PottsRBM, base: IndependentModel, chains: int, steps: int,
            generator: torch.Generator | None = None) -> AISResult:
    """log Z of a Potts RBM by AIS from the independent model (Salakhutdinov & Murray).

    f_b(x) = (1 - b) log p0(x) + b sum_i b_i[x_i] + sum_j softplus(b a_j(x)): the hidden
    units summed out of the b-scaled joint. At b = 0 this is log p0(x) + H log 2.
    """
    cfg = model.config
    base_logp = torch.as_tensor(base.log_probs[0], dtype=torch.float32).reshape(-1, cfg.levels)
    x = base.sample(chains, generator)
    log_w = torch.zeros(chains, dtype=torch.float64)
    betas = beta_schedule(steps)

    def f(x_: torch.Tensor, beta: float) -> torch.Tensor:
        onehot = model._onehot(x_)
        log_p0 = (onehot * base_logp).sum((1, 2))
        field = (onehot * model.bias).sum((1, 2))
        act = model.hidden_activation(x_)
        return ((1 - beta) * log_p0 + beta * field + F.softplus(beta * act).sum(1)).double()

    for previous, beta in zip(betas[:-1], betas[1:]):
        log_w += f(x, beta) - f(x, previous)
        x = model.gibbs(x, 1, generator, beta=float(beta), base_logp=base_logp)
    result = _summarise(log_w.numpy())
    result.log_z += cfg.hidden * math.log(2.0)  # log Z0 of the base joint
    return result


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


def steps_to_coherence(mean_energy: np.ndarray, tolerance: float = 0.01, tail_fraction: float = 0.5) -> int:
    """First sweep after which the mean energy stays within ``tolerance`` (relative) of
    its long-run mean (the mean over the last ``tail_fraction`` of the trace); -1 if never."""
    trace = np.asarray(mean_energy, dtype=np.float64)
    long_run = trace[int(len(trace) * (1 - tail_fraction)):].mean()
    inside = np.abs(trace - long_run) <= tolerance * abs(long_run)
    outside = np.flatnonzero(~inside)
    if len(outside) == 0:
        return 0
    first = int(outside[-1]) + 1
    return first if first < len(trace) else -1
