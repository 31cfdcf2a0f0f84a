"""A label-conditional deep belief net of 4-level MNIST (Hinton, Osindero & Teh 2006).

The model is a stack of RBMs trained greedily, bottom first, each by PCD:

- layer 1: :class:`rgbench.models.rbm.CategoricalRBM` over the 784 categorical pixels (4
  levels) with H1 binary hidden units, trained by :class:`rgbench.models.pcd.RBMPCDTrainer`
  (SGD with momentum, lr decayed linearly to 0, weight decay; the potts_ebm recipe);
- layers 2..: :class:`BernoulliRBM`, whose binary visible units are the layer below's
  hidden units. Its training data are the lower layer's hidden *probabilities* given the
  data (``features: probabilities``, Hinton & Salakhutdinov's practice) or binary samples
  of them (``features: samples``);
- the top RBM also has 10 one-hot label units on its visible side, joined to its hidden
  units (the paper's "associative memory" with its label units). It is trained on the
  joint (features, label); ``discriminative_weight`` > 0 adds that multiple of the gradient
  of log p(y | features) (the hybrid objective of Larochelle & Bengio 2008), as rbm_cond does.

After training, every layer below the top keeps only its top-down (generative) weights:
the DBN is a top-level RBM over (penultimate layer, label) with directed sigmoid layers
below it, ending in a categorical softmax per pixel.

Generation (:meth:`DBN.sample`), as in section 2 and figure 8 of the paper:

1. start the top RBM's visible units from noise: by default (``sample_start: pixels``, the
   paper's figure 9) an up-pass, sampled layer by layer through the recognition weights,
   from an image whose pixels are uniform over the 4 levels; or (``penultimate``) every
   penultimate unit ~ Bernoulli(1/2). For unconditional samples the label starts uniform;
2. alternating block Gibbs in the top RBM for ``gibbs_sweeps`` sweeps: all top hidden units
   given (penultimate, label), then all penultimate units given the top hidden units and,
   unless the label is clamped, the label given them;
3. one top-down pass through the directed layers: each layer's binary states sampled from
   sigmoid(W h + b) given the layer above (``down_pass: samples``, an ancestral sample of
   the DBN's generative model; ``down_pass: probabilities`` passes the means down instead,
   as the paper's figures show pixel probabilities), and the pixels drawn from their
   categorical conditionals at temperature 1.

Departures from the paper: no up-down (contrastive wake-sleep) fine-tuning, so the
recognition and generative weights stay tied; PCD rather than CD-k; categorical pixels
(4 levels) rather than binary ones; sizes and epochs chosen for a small CPU budget
(docs/decisions/dbn.md).

Block structure: every Gibbs update above is a block update of a bipartite graph (all
hidden units given the visible ones, then all visible units, with the label's one-hot group
as one more visible block, given the hidden ones), and the top-down pass is one block per
layer in a fixed order. The sampler is therefore a THRML-style two-colour block program for
the top RBM followed by a sequence of conditional blocks, the same structure as the
categorical RBMs' THRML programs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.data.preprocess import CLASSES, LEVELS, LevelData
from rgbench.io import atomic_path
from rgbench.models.pcd import (MomentumSchedule, RBMPCDTrainer, RBMTrainConfig, fast_weights_added, rbm_optimizer,
                                update_fast_weights)
from rgbench.models.potts import AISResult, IndependentModel, summarise_log_weights
from rgbench.models.rbm import CategoricalRBM, RBMConfig, power_schedule, sample_above_reference
from rgbench.training import load_trained_module, save_model_file

SIDE = 28
FEATURES = ("probabilities", "samples")
DOWN_PASSES = ("samples", "probabilities")
# Where the top-level chains start: an up-pass from a uniform-noise image (the paper's
# figure 9), or uniform noise at the penultimate layer itself.
STARTS = ("pixels", "penultimate")
# Bumped when what a saved DBN holds changes (3: the config's fast_lr / fast_decay).
SAVE_FORMAT = 3
# Rows per batch when a layer's features of the whole training split are computed: bounds
# the temporary (rows, hidden) activations without slowing the pass.
FEATURE_BATCH = 5000
# Updates between the upper layers' logged free-energy gaps.
GAP_EVERY = 20


@dataclass
class DBNConfig:
    """Greedy PCD training of a DBN and how it generates (config ``potts_ebm.dbn``, the one
    home of every value; ``smoothing`` is potts_ebm's).

    ``hidden``: hidden units of each RBM, bottom first; the last RBM is the top one (with
    the labels). ``epochs``: one entry per RBM."""

    hidden: list[int]
    epochs: list[int]
    batch_size: int
    lr: float  # layer 1's initial learning rate (decayed linearly to 0)
    upper_lr: float  # the Bernoulli layers' initial learning rate (decayed linearly to 0)
    label_lr_factor: float  # top RBM: lr multiplier of the label weights and biases
    discriminative_weight: float  # top RBM: weight of log p(y | features) (hybrid objective)
    momentum_start: float
    momentum_final: float
    momentum_switch_epochs: int
    weight_decay: float  # L2 on the weights of every layer
    chains: int  # persistent chains per layer, started at random training rows
    sweeps: int  # PCD-k: Gibbs sweeps per update
    # FPCD of the Bernoulli layers (Tieleman & Hinton 2009): their chains run on regular + fast
    # weights; fast_lr 0 is plain PCD (layer 1 always is)
    fast_lr: float  # the fast weights' (constant) learning rate
    fast_decay: float  # the fast weights shrink by this fraction every update
    init_std: float
    features: str  # what an upper layer is trained on (FEATURES)
    down_pass: str  # how the generative pass carries states down (DOWN_PASSES)
    sample_start: str  # where the top-level chains start (STARTS)
    # after training, AIS of the top RBM's per-label partition functions: the class prior that
    # label-free chains reach at equilibrium (equilibrium_label_prior); 0 chains: not estimated
    prior_chains: int  # AIS chains per label (the doubling check runs half the chains and steps)
    prior_steps: int  # annealing steps, a linear schedule in beta
    smoothing: float  # add-alpha counts of the independent model that starts layer 1's biases

    def __post_init__(self) -> None:
        self.hidden = [int(h) for h in self.hidden]
        self.epochs = [int(e) for e in self.epochs]
        if len(self.hidden) < 2:
            raise ValueError(f"a DBN needs at least 2 RBMs (1 is rbm_cond), got hidden={self.hidden}")
        if min(self.hidden) < 1:
            raise ValueError(f"every layer needs >= 1 hidden unit, got hidden={self.hidden}")
        if len(self.epochs) != len(self.hidden) or min(self.epochs) < 1:
            raise ValueError(f"epochs needs one value >= 1 per RBM ({len(self.hidden)}), got {self.epochs}")
        for name in ("batch_size", "chains", "sweeps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.upper_lr > 0 and self.label_lr_factor > 0):
            raise ValueError("lr, upper_lr and label_lr_factor must be > 0")
        if self.weight_decay < 0 or self.discriminative_weight < 0 or self.smoothing <= 0:
            raise ValueError("weight_decay and discriminative_weight must be >= 0, smoothing > 0")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.down_pass not in DOWN_PASSES:
            raise ValueError(f"down_pass must be one of {DOWN_PASSES}, got {self.down_pass!r}")
        if self.sample_start not in STARTS:
            raise ValueError(f"sample_start must be one of {STARTS}, got {self.sample_start!r}")
        if self.fast_lr < 0 or not 0 <= self.fast_decay <= 1:
            raise ValueError(f"fast_lr must be >= 0 and fast_decay in [0, 1], got {self.fast_lr}, {self.fast_decay}")
        if self.prior_chains < 0 or self.prior_steps < 1:
            raise ValueError(f"prior_chains must be >= 0 and prior_steps >= 1, got {self.prior_chains}, {self.prior_steps}")


# ----------------------------------------------------------------------------- Bernoulli RBM

class BernoulliRBM(nn.Module):
    """Binary-visible, binary-hidden RBM, optionally with a one-hot label group on its
    visible side joined to the hidden units:

        -E(v, h, y) = b.v + c.h + v^T W h + d_y + sum_j U_yj h_j
    """

    def __init__(self, visible: int, hidden: int, classes: int = 0, init_std: float = 0.01) -> None:
        super().__init__()
        if visible < 1 or hidden < 1 or classes < 0:
            raise ValueError(f"invalid Bernoulli RBM sizes: visible={visible}, hidden={hidden}, classes={classes}")
        self.visible, self.hidden, self.classes = visible, hidden, classes
        self.weight = nn.Parameter(torch.randn(visible, hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(visible))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))
        k = max(classes, 1)  # an unconditional RBM keeps a zero placeholder (one state_dict layout)
        self.label_weight = nn.Parameter(torch.randn(k, hidden) * init_std * (classes > 0))
        self.label_bias = nn.Parameter(torch.zeros(k))

    @property
    def conditional(self) -> bool:
        return self.classes > 0

    def check_labels(self, labels: torch.Tensor | None, n: int) -> None:
        if labels is None:
            return
        if labels.shape != (n,):
            raise ValueError(f"expected {n} labels, got shape {tuple(labels.shape)}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.classes):
            raise ValueError(f"labels must lie in [0, {self.classes}), got {int(labels.min())}..{int(labels.max())}")

    def hidden_activation(self, v: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        act = torch.addmm(self.hidden_bias, v, self.weight)
        if labels is not None and self.conditional:
            act = act + self.label_weight[labels.long()]
        return act

    def hidden_probs(self, v: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.hidden_activation(v, labels))

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.visible_bias, h, self.weight.t()))

    def label_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.label_bias + h @ self.label_weight.t()

    def free_energy(self, v: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """F(v) (or F(v, y)) = -log sum_h exp(-E), (N,)."""
        fe = -(v @ self.visible_bias) - softplus(self.hidden_activation(v, labels)).sum(1)
        if labels is not None and self.conditional:
            fe = fe - self.label_bias[labels.long()]
        return fe

    def label_log_posterior(self, v: torch.Tensor) -> torch.Tensor:
        """log p(y | v) for every label, (N, K): exact, the hidden units summed out."""
        act = self.hidden_activation(v)
        scores = self.label_bias + softplus(act[:, None, :] + self.label_weight[None]).sum(-1)
        return torch.log_softmax(scores, dim=1)

    @torch.no_grad()
    def discriminative_direction(self, v: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The gradient of mean_n log p(y_n | v_n), in closed form: autograd through the
        (N, K, H) candidate activations cost twice the whole PCD update."""
        labels = labels.long()
        base = self.hidden_activation(v)  # (N, H), no label
        candidate = base[:, None, :] + self.label_weight[None]  # (N, K, H)
        posterior = torch.softmax(self.label_bias + softplus(candidate).sum(-1), dim=1)
        delta = (F.one_hot(labels, self.classes).to(v.dtype) - posterior) / len(v)  # (N, K)
        per_hidden = delta[:, :, None] * torch.sigmoid(candidate)  # (N, K, H)
        hidden = per_hidden.sum(1)  # (N, H)
        return {"weight": v.t() @ hidden, "visible_bias": torch.zeros_like(self.visible_bias),
                "hidden_bias": hidden.sum(0), "label_weight": per_hidden.sum(0), "label_bias": delta.sum(0)}

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, labels: torch.Tensor | None, sweeps: int, generator: torch.Generator | None,
              clamp_labels: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``sweeps`` block-Gibbs sweeps: h | v, y; then v | h and, unless clamped, y | h.
        Returns the visible states, the labels and the last hidden state (None if 0 sweeps)."""
        h = None
        for _ in range(sweeps):
            h = bernoulli(self.hidden_probs(v, labels), generator)
            v = bernoulli(self.visible_probs(h), generator)
            if self.conditional and not clamp_labels:
                labels = torch.multinomial(torch.softmax(self.label_logits(h), 1), 1, generator=generator)[:, 0]
        return v, labels, h

    @torch.no_grad()
    def pcd_statistics(self, v: torch.Tensor, labels: torch.Tensor | None, chains: torch.Tensor,
                       chain_labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Data minus chain statistics (the ascent direction of the mean log-likelihood),
        with p(h | v) rather than sampled h on both sides."""
        ph_data = self.hidden_probs(v, labels)
        ph_model = self.hidden_probs(chains, chain_labels)
        n, m = len(v), len(chains)
        grads = {"weight": v.t() @ ph_data / n - chains.t() @ ph_model / m,
                 "visible_bias": v.mean(0) - chains.mean(0),
                 "hidden_bias": ph_data.mean(0) - ph_model.mean(0),
                 "label_weight": torch.zeros_like(self.label_weight),
                 "label_bias": torch.zeros_like(self.label_bias)}
        if self.conditional:
            grads["label_weight"].index_add_(0, labels.long(), ph_data / n).index_add_(0, chain_labels.long(),
                                                                                         ph_model / -m)
            grads["label_bias"].index_add_(0, labels.long(), torch.full((n,), 1.0 / n)).index_add_(
                0, chain_labels.long(), torch.full((m,), -1.0 / m))
        return grads


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) as max(x, 0) - log sigmoid(|x|): the same values to float32 rounding
    (sigmoid(|x|) lies in [1/2, 1), so nothing underflows), about 7x faster than
    F.softplus on one CPU thread, where the top RBM's (N, 10, H) label terms made the
    discriminative update cost more than the PCD statistics."""
    return x.clamp(min=0) - torch.sigmoid(x.abs()).log()


def bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Binary draws of probabilities ``p`` (one uniform per unit, from ``generator``)."""
    return (torch.rand(p.shape, generator=generator, device=p.device) < p).to(p.dtype)


# ----------------------------------------------------------------------------- the label prior

@torch.no_grad()
def label_log_partitions(top: BernoulliRBM, base_probs: torch.Tensor, chains: int, betas: np.ndarray,
                         generator: torch.Generator | None = None) -> list[AISResult]:
    """log Z_y = log sum_{v, h} exp(-E(v, h, y)) of a conditional top RBM for every label y,
    by AIS with ``chains`` chains per label (all labels in one batch).

    Label y's path starts at p0_y(v) = prod_i Bernoulli(base_probs[y, i]) with h independent
    fair coins (the training features' means per class start each chain near its label's
    digits) and reaches the RBM with y clamped: with g = logit(base_probs[y]) and h summed out,
    f_beta(v) = (1 - beta) g.v + beta (b.v + d_y) + sum_j softplus(beta a_j), a = c + W^T v + U_y,
    so log Z0 = sum_i softplus(g_i) + H log 2; T_beta is block Gibbs, h | v ~ sigmoid(beta a),
    then v | h ~ sigmoid((1 - beta) g + beta (b + W h))."""
    if not top.conditional:
        raise ValueError("label partitions need a top RBM with label units")
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if base_probs.shape != (top.classes, top.visible):
        raise ValueError(f"base_probs must be ({top.classes}, {top.visible}), got {tuple(base_probs.shape)}")
    p = base_probs.double().clamp(1e-4, 1 - 1e-4)
    base = torch.log(p / (1 - p)).float()  # (K, V)
    labels = torch.arange(top.classes).repeat_interleave(chains)
    offset = top.hidden_bias + top.label_weight[labels]  # (N, H): c + U_y of each chain
    chain_base = base[labels]  # (N, V)
    field = top.visible_bias - chain_base  # b - g: the visible terms grow as beta (b - g) . v
    v = bernoulli(torch.sigmoid(chain_base), generator)
    log_w = torch.zeros(len(labels), dtype=torch.float64)
    for previous, beta in zip(np.asarray(betas[:-1], dtype=float), np.asarray(betas[1:], dtype=float)):
        act = torch.addmm(offset, v, top.weight)
        log_w += (beta - previous) * (v * field).sum(1, dtype=torch.float64)
        log_w += softplus(beta * act).sum(1, dtype=torch.float64) - softplus(previous * act).sum(1, dtype=torch.float64)
        h = bernoulli(torch.sigmoid(beta * act), generator)
        logits = torch.addmm(top.visible_bias, h, top.weight.t(), alpha=beta, beta=beta) + (1 - beta) * chain_base
        v = bernoulli(torch.sigmoid(logits), generator)
    log_z0 = softplus(base.double()).sum(1) + top.hidden * math.log(2.0)  # (K,)
    return [summarise_log_weights(log_w[labels == y].numpy(), float(log_z0[y]) + float(top.label_bias[y]))
            for y in range(top.classes)]


@torch.no_grad()
def equilibrium_label_prior(top: BernoulliRBM, base_probs: torch.Tensor, chains: int, steps: int, power: float,
                            generator: torch.Generator | None = None) -> dict[str, Any]:
    """The class prior p(y) = Z_y / sum_y' Z_y' that label-free chains of the top RBM (and so
    the DBN's unconditional samples) reach at equilibrium, from :func:`label_log_partitions`
    on the schedule ``power_schedule(steps, power)``, with the doubling check of the other
    AIS estimates: a run with half the chains and steps (``doubling_shift``: the largest
    change of a log p(y) between the two, in nats)."""
    full = label_log_partitions(top, base_probs, chains, power_schedule(steps, power), generator)
    half = label_log_partitions(top, base_probs, max(chains // 2, 2), power_schedule(max(steps // 2, 1), power),
                                generator)
    log_z = np.array([r.log_z for r in full])
    log_prior = log_z - np.logaddexp.reduce(log_z)
    log_prior_half = np.array([r.log_z for r in half])
    log_prior_half -= np.logaddexp.reduce(log_prior_half)
    return {"class_prior": np.exp(log_prior).tolist(), "log_z": log_z.tolist(),
            "doubling_shift": float(np.max(np.abs(log_prior - log_prior_half))),
            "ess": float(min(r.ess for r in full))}


# ----------------------------------------------------------------------------- the DBN

class DBN(nn.Module):
    """The trained stack: ``bottom`` (categorical pixels) and ``upper`` Bernoulli RBMs, the
    last of which is the top RBM with the labels."""

    def __init__(self, config: DBNConfig) -> None:
        super().__init__()
        self.config = config
        self.bottom = CategoricalRBM(RBMConfig(height=SIDE, width=SIDE, levels=LEVELS, hidden=config.hidden[0],
                                               classes=0, init_std=config.init_std))
        sizes = config.hidden
        self.upper = nn.ModuleList(
            BernoulliRBM(sizes[i - 1], sizes[i], CLASSES if i == len(sizes) - 1 else 0, config.init_std)
            for i in range(1, len(sizes)))
        self.record: dict[str, Any] = {}  # training record: seconds, per-layer history

    @property
    def top(self) -> BernoulliRBM:
        return self.upper[-1]

    def parameter_count(self) -> int:
        count = self.bottom.parameter_count()  # without its unused label placeholder
        for layer in self.upper:
            count += layer.weight.numel() + layer.visible_bias.numel() + layer.hidden_bias.numel()
            if layer.conditional:
                count += layer.label_weight.numel() + layer.label_bias.numel()
        return int(count)

    # ------------------------------------------------------------------ recognition (up) pass

    @torch.no_grad()
    def features(self, x: torch.Tensor, depth: int, generator: torch.Generator | None = None,
                 mode: str = "probabilities") -> torch.Tensor:
        """The hidden probabilities (or binary samples) of RBM ``depth`` (0 = bottom) given
        (N, 28, 28) levels, pushed up through the tied recognition weights."""
        state = torch.sigmoid(self.bottom.hidden_activation(x))
        for layer in self.upper[:depth]:
            if mode == "samples":
                state = bernoulli(state, generator)
            state = layer.hidden_probs(state)
        return bernoulli(state, generator) if mode == "samples" else state

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """argmax_y p(y | penultimate features) of the top RBM, (N,): a diagnostic of how
        strongly the labels are tied to the features."""
        pen = self.features(x, len(self.upper) - 1)
        return self.top.label_log_posterior(pen).argmax(1)

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def sample(self, n: int, labels: np.ndarray | torch.Tensor | Sequence[int] | None, gibbs_sweeps: int,
               generator: torch.Generator | None = None,
               down_pass: str | None = None, snapshots: Sequence[int] = (), start: str | None = None,
               ) -> np.ndarray | dict[int, np.ndarray]:
        """``n`` images, (n, 28, 28) uint8 levels in 0..3.

        ``labels``: n digits to clamp, or None for unconditional samples (label units free).
        ``gibbs_sweeps``: top-level sweeps.
        ``snapshots``: sweep counts (each <= gibbs_sweeps) at which the chains are also
        passed down; then a dict sweep -> images is returned, holding gibbs_sweeps too.
        ``down_pass`` and ``start`` default to the config's ``down_pass`` and ``sample_start``."""
        sweeps = int(gibbs_sweeps)
        mode = self.config.down_pass if down_pass is None else down_pass
        start = self.config.sample_start if start is None else start
        if start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {start!r}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if sweeps < 1:
            raise ValueError(f"gibbs_sweeps must be >= 1, got {sweeps}")
        if mode not in DOWN_PASSES:
            raise ValueError(f"down_pass must be one of {DOWN_PASSES}, got {mode!r}")
        wanted = sorted({int(s) for s in snapshots} | {sweeps})
        if wanted[0] < 1 or wanted[-1] > sweeps:
            raise ValueError(f"snapshots must lie in [1, {sweeps}], got {list(snapshots)}")
        top = self.top
        clamped = labels is not None
        if clamped:
            y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
            top.check_labels(y, n)
        pen = self.start_state(n, generator, start)
        if not clamped:  # the free label starts uniform too
            y = torch.randint(0, CLASSES, (n,), generator=generator)
        out: dict[int, np.ndarray] = {}
        done = 0
        for stop in wanted:
            pen, y, h = top.gibbs(pen, y, stop - done, generator, clamp_labels=clamped)
            done = stop
            # the penultimate state passed down: the last visible sample, or its mean given h
            start = top.visible_probs(h) if mode == "probabilities" else pen
            out[stop] = self.down(start, generator, mode)
        return out if snapshots else out[sweeps]

    @torch.no_grad()
    def start_state(self, n: int, generator: torch.Generator | None, start: str | None = None) -> torch.Tensor:
        """(n, penultimate units) binary states the top-level chains start from (``start``:
        see ``STARTS``; default the config's ``sample_start``)."""
        start = self.config.sample_start if start is None else start
        if start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {start!r}")
        if start == "pixels":  # each pixel uniform over the levels, then one sampled up-pass
            noise = torch.randint(0, LEVELS, (n, SIDE, SIDE), generator=generator, dtype=torch.uint8)
            return self.features(noise, len(self.upper) - 1, generator, mode="samples")
        return bernoulli(torch.full((n, self.top.visible), 0.5), generator)

    @torch.no_grad()
    def down(self, state: torch.Tensor, generator: torch.Generator | None, mode: str) -> np.ndarray:
        """One top-down pass from the penultimate layer's states to pixel levels."""
        for layer in reversed(self.upper[:-1]):
            state = layer.visible_probs(state)
            if mode == "samples":
                state = bernoulli(state, generator)
        levels = sample_above_reference(self.bottom.partial_logits(state), generator)
        return levels.view(len(state), SIDE, SIDE).numpy()

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
        """torch.save of a plain dict (config, weights, training record, and ``extra``: a
        job's own record), written atomically; returns the dict."""
        return save_model_file(path, "dbn", SAVE_FORMAT, self, self.config, self.record, **extra)

    @classmethod
    def load_payload(cls, path: str | os.PathLike) -> tuple["DBN", dict[str, Any]]:
        """The DBN in eval mode and the whole dict it was saved in."""
        return load_trained_module(path, "dbn", SAVE_FORMAT, lambda config: cls(DBNConfig(**config)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DBN":
        return cls.load_payload(path)[0]


# ----------------------------------------------------------------------------- training

def bottom_train_config(cfg: DBNConfig) -> RBMTrainConfig:
    """The layer-1 RBM's PCD settings in potts_ebm's form (plain PCD, no label layer)."""
    return RBMTrainConfig(hidden=cfg.hidden[0], epochs=cfg.epochs[0], batch_size=cfg.batch_size, lr=cfg.lr,
                          label_lr_factor=1.0, discriminative_weight=0.0, momentum_start=cfg.momentum_start,
                          momentum_final=cfg.momentum_final, momentum_switch_epochs=cfg.momentum_switch_epochs,
                          weight_decay=cfg.weight_decay, chains=cfg.chains, sweeps=cfg.sweeps,
                          fast_lr={"rbm": 0.0, "rbm_cond": 0.0}, fast_decay=0.0, init_std=cfg.init_std,
                          val_images=1)


def check_data(data: LevelData) -> None:
    x, y = np.asarray(data.train_x), np.asarray(data.train_y)
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"expected (N, {SIDE}, {SIDE}) training levels, got shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= LEVELS):
        raise ValueError(f"training levels must lie in [0, {LEVELS})")
    if y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() >= CLASSES)):
        raise ValueError(f"expected {len(x)} training labels in [0, {CLASSES})")


def _train_bottom(model: DBN, cfg: DBNConfig, data: LevelData, generator: torch.Generator,
                  order: Callable[[int], torch.Tensor], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Layer 1 by potts_ebm's RBM PCD trainer (its statistics and optimiser), in a plain loop."""
    rbm_cfg = bottom_train_config(cfg)
    independent = IndependentModel.fit(data.train_x, alpha=cfg.smoothing)
    model.bottom.set_visible_bias_from(independent.log_probs[0])
    train_x = torch.from_numpy(np.ascontiguousarray(data.train_x))
    train_y = torch.from_numpy(np.asarray(data.train_y, dtype=np.int64))
    start = torch.randperm(len(train_x), generator=generator)[: cfg.chains]
    trainer = RBMPCDTrainer(model.bottom, train_x[start], train_y[start], cfg.sweeps, generator)
    optimizer = rbm_optimizer(model.bottom, rbm_cfg)
    steps = len(train_x) // cfg.batch_size
    schedule = MomentumSchedule(optimizer, steps * cfg.epochs[0], steps * cfg.momentum_switch_epochs,
                                cfg.momentum_start, cfg.momentum_final)
    history = []
    for epoch in range(cfg.epochs[0]):
        began = time.process_time()
        perm = order(len(train_x))
        for i in range(steps):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            optimizer.zero_grad(set_to_none=True)
            trainer.loss((train_x[idx], train_y[idx])).backward()
            optimizer.step()
            schedule.step()
        gap = float(np.mean(trainer.gaps[-steps:]))
        history.append({"layer": 0, "epoch": epoch, "cpu_seconds": time.process_time() - began, "gap": gap})
        log(f"layer 0 epoch {epoch}: free-energy gap {gap:.2f}, {history[-1]['cpu_seconds']:.1f} CPU-s")
    return history


def _train_upper(layer: BernoulliRBM, depth: int, cfg: DBNConfig, inputs: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator, order: Callable[[int], torch.Tensor],
                 log: Callable[[str], None]) -> list[dict[str, Any]]:
    """PCD of one Bernoulli layer on its input features (and, for the top, the labels).
    The update direction is data minus chain statistics (plus, for the top, the weighted
    discriminative direction), set as minus the gradient so that torch.optim.SGD
    (momentum, weight decay on the weights) applies it."""
    epochs = cfg.epochs[depth]
    lr, label_lr = cfg.upper_lr, cfg.upper_lr * (cfg.label_lr_factor if layer.conditional else 1.0)
    optimizer = torch.optim.SGD([
        {"params": [layer.weight], "weight_decay": cfg.weight_decay, "lr": lr},
        {"params": [layer.visible_bias, layer.hidden_bias], "weight_decay": 0.0, "lr": lr},
        {"params": [layer.label_weight], "weight_decay": cfg.weight_decay, "lr": label_lr},
        {"params": [layer.label_bias], "weight_decay": 0.0, "lr": label_lr}], lr=lr, momentum=cfg.momentum_start)
    steps = len(inputs) // cfg.batch_size
    schedule = MomentumSchedule(optimizer, steps * epochs, steps * cfg.momentum_switch_epochs, cfg.momentum_start,
                                cfg.momentum_final)
    start = torch.randperm(len(inputs), generator=generator)[: cfg.chains]
    chains = bernoulli(inputs[start], generator)
    chain_labels = labels[start].clone() if layer.conditional else None
    fast = {name: torch.zeros_like(p) for name, p in layer.named_parameters()} if cfg.fast_lr else {}
    history = []
    for epoch in range(epochs):
        began = time.process_time()
        perm = order(len(inputs))
        gaps = []
        for i in range(steps):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            v = inputs[idx]
            if cfg.features == "samples":
                v = bernoulli(v, generator)
            y = labels[idx] if layer.conditional else None
            # the conditional top RBM models (features, label) jointly: its chains sample labels too
            with fast_weights_added(layer, fast):
                chains, chain_labels, _ = layer.gibbs(chains, chain_labels, cfg.sweeps, generator, clamp_labels=False)
            grads = layer.pcd_statistics(v, y, chains, chain_labels)
            if layer.conditional and cfg.discriminative_weight > 0:
                for name, g in layer.discriminative_direction(v, y).items():
                    grads[name].add_(g, alpha=cfg.discriminative_weight)
            update_fast_weights(fast, grads, cfg.fast_lr, cfg.fast_decay)
            for name, p in layer.named_parameters():
                p.grad = -grads[name]  # SGD descends: minus the ascent direction
            optimizer.step()
            schedule.step()
            if i % GAP_EVERY == 0:  # a progress signal only: two extra products, so not every update
                with torch.no_grad():
                    gaps.append(float(layer.free_energy(v, y).mean()
                                      - layer.free_energy(chains, chain_labels).mean()))
        history.append({"layer": depth, "epoch": epoch, "cpu_seconds": time.process_time() - began,
                        "gap": float(np.mean(gaps))})
        log(f"layer {depth} epoch {epoch}: free-energy gap {history[-1]['gap']:.2f}, "
            f"{history[-1]['cpu_seconds']:.1f} CPU-s")
    return history


def train_dbn(cfg: DBNConfig, data: LevelData, seed: int, log: Callable[[str], None] | None = None,
              checkpoint_path: str | os.PathLike | None = None) -> DBN:
    """Greedy layer-wise PCD training of a DBN on ``data.train_x`` / ``train_y`` (the
    validation split is only used for the label-accuracy diagnostic in the record).
    Deterministic for a fixed seed and thread count.

    With ``checkpoint_path`` the stack is saved after each layer (weights, history, the
    run's generator state) and a rerun of the same config, seed and data resumes after the
    last finished layer with the same result; the file is removed when training ends.

    With ``cfg.prior_chains`` > 0 the record also holds the top RBM's equilibrium class prior
    (:func:`equilibrium_label_prior`, after training; its CPU-seconds are not training's)."""
    check_data(data)
    log = log or (lambda message: None)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the initial weights
    model = DBN(cfg)

    def order(n: int) -> torch.Tensor:  # this epoch's shuffle, from the run's generator
        return torch.randperm(n, generator=generator)

    identity = {"config": asdict(cfg), "seed": seed, "n_train": len(data.train_x)}
    layers_done, history, spent = 0, [], 0.0
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if saved["identity"] == identity:
            model.load_state_dict(saved["state_dict"])
            generator.set_state(saved["generator"])
            layers_done, history, spent = saved["layers_done"], saved["history"], saved["cpu_seconds"]
            log(f"resumed after layer {layers_done - 1} from {checkpoint_path}")

    began = time.process_time() - spent

    def finished(layer: int) -> None:  # a layer is trained: checkpoint the stack
        if checkpoint_path is not None:
            state = {"identity": identity, "layers_done": layer + 1, "state_dict": model.state_dict(),
                     "generator": generator.get_state(), "history": history,
                     "cpu_seconds": time.process_time() - began}
            with atomic_path(checkpoint_path) as tmp:
                torch.save(state, tmp)

    if layers_done == 0:
        history = _train_bottom(model, cfg, data, generator, order, log)
        finished(0)
    train_x = torch.from_numpy(np.ascontiguousarray(data.train_x))
    labels = torch.from_numpy(np.asarray(data.train_y, dtype=np.int64))
    inputs = _batched(lambda rows: torch.sigmoid(model.bottom.hidden_activation(rows)), train_x)
    for depth, layer in enumerate(model.upper, start=1):
        if depth >= layers_done:
            history += _train_upper(layer, depth, cfg, inputs, labels, generator, order, log)
            finished(depth)
        if layer is not model.top:
            inputs = _batched(layer.hidden_probs, inputs)
    model.eval()
    record: dict[str, Any] = {"seed": seed, "train_cpu_seconds": time.process_time() - began,
                              "n_train": len(data.train_x), "history": history}
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    if cfg.prior_chains > 0:
        # the training features' mean per class: each label's AIS chains start near its digits
        base = torch.stack([inputs[labels == y].mean(0) if bool((labels == y).any())
                            else torch.full((inputs.shape[1],), 0.5) for y in range(CLASSES)])
        began_prior = time.process_time()
        prior = equilibrium_label_prior(model.top, base, cfg.prior_chains, cfg.prior_steps, 1.0, generator)
        record["equilibrium_label_prior"] = {**prior, "cpu_seconds": time.process_time() - began_prior}
        log(f"equilibrium label prior (AIS): largest {max(prior['class_prior']):.3f}, smallest "
            f"{min(prior['class_prior']):.4f}, doubling shift {prior['doubling_shift']:.2f} nats")
    if len(data.val_x):
        val_x = torch.from_numpy(np.ascontiguousarray(data.val_x))
        predicted = torch.cat([model.classify(val_x[i:i + FEATURE_BATCH]) for i in range(0, len(val_x), FEATURE_BATCH)])
        record["val_label_accuracy"] = float((predicted.numpy() == np.asarray(data.val_y)).mean())
    model.record = record
    return model


@torch.no_grad()
def _batched(function: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    return torch.cat([function(rows[i:i + FEATURE_BATCH]) for i in range(0, len(rows), FEATURE_BATCH)])
