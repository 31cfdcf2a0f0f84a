"""Categorical restricted Boltzmann machines of 4-level MNIST, and their likelihoods.

``CategoricalRBM``: 784 categorical visible units (4 levels), H binary hidden units and,
with ``classes`` > 0, a one-hot label layer joined to the hidden units (the top-level RBM
of Hinton, Osindero & Teh 2006, which generates a digit of a clamped class).

    -E(v, h, y) = sum_i b_i[v_i] + c.h + sum_ij W_i[v_i, j] h_j + d_y + sum_j U_yj h_j

Level 0 is every site's reference level (its weights and bias are 0): the same family of
distributions as a full one-hot parametrisation, with a quarter fewer weights and no
redundant direction for PCD noise to drift along. A visible configuration selects one
weight row per site whose level is not 0; MNIST images have about 16% such sites, so the
hidden activations are sums of ~120 rows (an embedding bag) rather than a dense product.

Likelihoods. With h (and y) summed out, the unnormalised log-probability of an image is

    f(v) = sum_i b_i[v_i] + sum_j softplus(a_j(v))                       (no labels)
    f(v) = sum_i b_i[v_i] + log sum_y exp(d_y + sum_j softplus(a_j(v) + U_yj))   (labels),

with a(v) = c + sum_i W_i[v_i]. log Z is estimated by annealed importance sampling (AIS,
Neal 2001; Salakhutdinov & Murray 2008) from the independent-pixel model p0 along

    f_beta(v) = (1 - beta) log p0(v) + f(v; beta-scaled parameters),

each step moved by block Gibbs at that beta (y, then h, then v). AIS is unbiased in Z, so
log Z-hat is low on average and the test NLL it gives is optimistic. The conservative
counterpart is reverse annealing (RAISE, Burda, Grosse & Salakhutdinov 2015): the same
kernels run from a test image back to p0 give an unbiased estimate of the annealed
model's probability of that image, whose log is a stochastic lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.models.potts import AISResult, summarise_log_weights

# hidden_product's switch to the dense product: beyond ~20% active units the sparse sum
# loses (measured on 1,000 chains of a trained H = 500 RBM, 4% active: 4.5x faster)
SPARSE_HIDDEN = 0.1


def sample_above_reference(partial: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of categorical logits whose level 0 is 0, given only the logits of
    levels 1.. (..., L - 1), by inverse CDF (one uniform per draw), uint8. No padded copy,
    one max over L - 1 values: cumsum and softmax over a last axis this short cost several
    times more than these flat passes."""
    top = partial.amax(-1, keepdim=True).clamp_(min=0.0)
    weights = (partial - top).exp_()
    running = (-top[..., 0]).exp_()
    u = torch.rand(running.shape, generator=generator, device=partial.device)
    thresholds = [running.clone()]
    for level in range(partial.shape[-1]):
        running += weights[..., level]
        if level < partial.shape[-1] - 1:
            thresholds.append(running.clone())
    u.mul_(running)
    out = torch.zeros(running.shape, dtype=torch.uint8, device=partial.device)
    for threshold in thresholds:
        out += u >= threshold
    return out


@dataclass
class RBMConfig:
    height: int
    width: int
    levels: int
    hidden: int
    classes: int  # 0: no label layer; 10: the class-conditional RBM
    init_std: float  # weights start as N(0, init_std^2)


class CategoricalRBM(nn.Module):
    """Categorical-visible, binary-hidden RBM, optionally with a label layer."""

    def __init__(self, config: RBMConfig) -> None:
        super().__init__()
        if config.levels < 2 or config.hidden < 1 or config.classes < 0:
            raise ValueError(f"invalid RBM config {config}")
        self.config = config
        self.sites = config.height * config.width
        rows = self.sites * (config.levels - 1)
        self.weight = nn.Parameter(torch.randn(rows, config.hidden) * config.init_std)
        self.visible_bias = nn.Parameter(torch.zeros(rows))
        self.hidden_bias = nn.Parameter(torch.zeros(config.hidden))
        k = max(config.classes, 1)
        self.label_weight = nn.Parameter(torch.randn(k, config.hidden) * config.init_std * (config.classes > 0))
        self.label_bias = nn.Parameter(torch.zeros(k))

    @property
    def conditional(self) -> bool:
        return self.config.classes > 0

    def parameter_count(self) -> int:
        """Free parameters (the label layer only when there is one: unconditional RBMs keep a
        zero placeholder of it)."""
        count = self.weight.numel() + self.visible_bias.numel() + self.hidden_bias.numel()
        if self.conditional:
            count += self.label_weight.numel() + self.label_bias.numel()
        return int(count)

    # ------------------------------------------------------------------ visible layer

    def active_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weight rows that (N, H, W) levels select: flat row indices, per-image offsets
        (the bags of ``F.embedding_bag``) and the image of each row."""
        flat = x.reshape(len(x), -1).long()
        if flat.shape[1] != self.sites:
            raise ValueError(f"expected images of {self.sites} sites, got shape {tuple(x.shape)}")
        on = flat > 0
        rows = (torch.arange(self.sites, device=x.device) * (self.config.levels - 1))[None] + flat - 1
        counts = on.sum(1)
        offsets = torch.zeros(len(x), dtype=torch.long, device=x.device)
        offsets[1:] = counts.cumsum(0)[:-1]
        image = torch.repeat_interleave(torch.arange(len(x), device=x.device), counts)
        return rows[on], offsets, image

    def set_visible_bias_from(self, log_probs: np.ndarray) -> None:
        """b_il = log p_il - log p_i0: the model starts as the independent model p (with
        a negligible correction from the small initial weights)."""
        logp = torch.as_tensor(np.asarray(log_probs, dtype=np.float64).reshape(self.sites, -1))
        with torch.no_grad():
            self.visible_bias.copy_((logp[:, 1:] - logp[:, :1]).reshape(-1).float())

    def hidden_activation(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                          bags: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """a(v) = c + sum_i W_i[v_i] (+ U_y when labels are given), (N, H)."""
        rows, offsets, _ = bags or self.active_rows(x)
        act = F.embedding_bag(rows, self.weight, offsets, mode="sum") + self.hidden_bias
        if labels is not None:
            act = act + self.label_weight[labels.long()]
        return act

    def visible_field(self, x: torch.Tensor, bags: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """sum_i b_i[v_i], (N,)."""
        rows, offsets, _ = bags or self.active_rows(x)
        return F.embedding_bag(rows, self.visible_bias[:, None], offsets, mode="sum")[:, 0]

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """log-potentials of every site's levels given hidden states, (N, S, L), level 0 = 0."""
        return F.pad(self.partial_logits(h), (1, 0))

    def partial_logits(self, h: torch.Tensor) -> torch.Tensor:
        """b + W h for the levels above 0, (N, S, L - 1)."""
        return (self.hidden_product(h) + self.visible_bias).view(len(h), self.sites, -1)

    def hidden_product(self, h: torch.Tensor) -> torch.Tensor:
        """W h of binary hidden states, (N, S (L - 1)). A trained RBM's sampled hidden layer
        has a few percent of its units on, so the sum of the active units' columns of W (an
        embedding bag over W^T) costs about a quarter of the dense product; dense when more
        than SPARSE_HIDDEN of the units are on (e.g. annealing near beta = 0)."""
        if int(torch.count_nonzero(h)) > SPARSE_HIDDEN * h.numel():
            return h @ self.weight.t()  # no index list built on this path
        active = h.nonzero()
        offsets = torch.zeros(len(h), dtype=torch.long, device=h.device)
        offsets[1:] = torch.bincount(active[:, 0], minlength=len(h)).cumsum(0)[:-1]
        return F.embedding_bag(active[:, 1], self.weight.t().contiguous(), offsets, mode="sum")

    # ------------------------------------------------------------------ energies

    def free_energy(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """F(v) = -log sum_h exp(-E(v, h)), or F(v, y) with labels; (N,)."""
        bags = self.active_rows(x)
        fe = -(self.visible_field(x, bags) + F.softplus(self.hidden_activation(x, labels, bags)).sum(1))
        if labels is not None:
            fe = fe - self.label_bias[labels.long()]
        return fe

    def label_scores(self, x: torch.Tensor, bags: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """-F(v, y) - sum_i b_i[v_i] for every label y, (N, K): log p(y | v) up to a constant."""
        act = self.hidden_activation(x, None, bags)
        return self.label_bias + F.softplus(act[:, None, :] + self.label_weight[None]).sum(-1)

    def unnormalised_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """f(v) = log sum_{h, y} exp(-E(v, h, y)), (N,): the image's log-probability + log Z."""
        if not self.conditional:
            return -self.free_energy(x)
        bags = self.active_rows(x)
        return self.visible_field(x, bags) + torch.logsumexp(self.label_scores(x, bags), dim=1)

    # ------------------------------------------------------------------ block Gibbs

    @torch.no_grad()
    def sample_hidden(self, x: torch.Tensor, labels: torch.Tensor | None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        p = torch.sigmoid(self.hidden_activation(x, labels))
        return (torch.rand(p.shape, generator=generator, device=p.device) < p).to(p.dtype)

    @torch.no_grad()
    def sample_labels(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        logits = self.label_bias + h @ self.label_weight.t()
        return torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator)[:, 0]

    @torch.no_grad()
    def gibbs(self, x: torch.Tensor, labels: torch.Tensor | None, sweeps: int,
              generator: torch.Generator | None = None, clamp_labels: bool = True,
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``sweeps`` block-Gibbs sweeps (h | v, y; then v | h and, unless clamped, y | h).
        Returns the images, the labels and the last hidden state (None if sweeps = 0)."""
        shape = x.shape
        h = None
        for _ in range(sweeps):
            h = self.sample_hidden(x, labels, generator)
            x = sample_above_reference(self.partial_logits(h), generator).view(shape)
            if self.conditional and not clamp_labels:
                labels = self.sample_labels(h, generator)
        return x, labels, h

    @torch.no_grad()
    def pcd_gradient(self, x: torch.Tensor, labels: torch.Tensor | None, negatives: torch.Tensor,
                     negative_labels: torch.Tensor | None, weight_out: torch.Tensor | None = None,
                     discriminative_weight: float = 0.0) -> tuple[dict[str, torch.Tensor], float]:
        """The PCD ascent direction of the mean log-likelihood of a batch: data statistics
        minus chain statistics, with p(h | v) (not sampled h) on both sides. Returns one
        tensor per parameter name and the free-energy gap mean F(data) - mean F(chains).

        The weight statistic sum_n coef_n v_n p(h | v_n)^T is a sparse product: each
        image selects ~16% of the weight rows. ``weight_out``: a buffer for that statistic;
        reusing one buffer saves the page faults of a fresh 4.7 MB tensor at every update,
        which cost more than the product itself. ``discriminative_weight`` (labels only)
        adds that multiple of the gradient of the batch's mean log p(y | v): the hybrid
        objective of Larochelle & Bengio (2008), which couples the labels more tightly."""
        n_data, n_neg = len(x), len(negatives)
        images = torch.cat([x.to(torch.uint8), negatives.to(torch.uint8)])
        all_labels = torch.cat([labels, negative_labels]).long() if self.conditional else None
        rows, offsets, image = self.active_rows(images)
        act = self.hidden_activation(images, all_labels, (rows, offsets, image))
        coef = torch.cat([torch.full((n_data,), 1.0 / n_data), torch.full((n_neg,), -1.0 / n_neg)]).to(act.device)
        weighted = torch.sigmoid(act) * coef[:, None]
        # (image, row) pairs come image-major with ascending rows: already coalesced, so no sort
        selection = torch.sparse_coo_tensor(torch.stack([image, rows]), torch.ones(len(rows), device=act.device),
                                            (len(images), self.weight.shape[0]), check_invariants=False,
                                            is_coalesced=True)
        if weight_out is None:
            weight_out = torch.empty_like(self.weight)
        grads = {"weight": torch.mm(selection.t(), weighted, out=weight_out),
                 "visible_bias": torch.zeros_like(self.visible_bias).index_add_(0, rows, coef[image]),
                 "hidden_bias": weighted.sum(0),
                 "label_weight": torch.zeros_like(self.label_weight),
                 "label_bias": torch.zeros_like(self.label_bias)}
        if self.conditional:
            grads["label_weight"].index_add_(0, all_labels, weighted)
            grads["label_bias"].index_add_(0, all_labels, coef)
        if self.conditional and discriminative_weight > 0:
            self._add_discriminative(grads, act[:n_data], all_labels[:n_data], rows, image, n_data,
                                     discriminative_weight)
        free = -(F.embedding_bag(rows, self.visible_bias[:, None], offsets, mode="sum")[:, 0]
                 + F.softplus(act).sum(1))
        if self.conditional:
            free = free - self.label_bias[all_labels]
        gap = float(free[:n_data].mean() - free[n_data:].mean())
        return grads, gap

    def _add_discriminative(self, grads: dict[str, torch.Tensor], act: torch.Tensor, labels: torch.Tensor,
                            rows: torch.Tensor, image: torch.Tensor, n_data: int, weight: float) -> None:
        """Add ``weight`` times the gradient of mean_n log p(y_n | v_n), where
        p(y | v) ~ exp(d_y + sum_j softplus(a_j(v) + U_yj)) (``act`` includes U_{y_n})."""
        base = act - self.label_weight[labels]  # a(v) without the label
        candidate = base[:, None, :] + self.label_weight[None]  # (N, K, H)
        posterior = torch.softmax(self.label_bias + F.softplus(candidate).sum(-1), dim=1)
        delta = F.one_hot(labels, self.config.classes).to(act.dtype) - posterior  # (N, K)
        per_hidden = delta[:, :, None] * torch.sigmoid(candidate) * (weight / n_data)  # (N, K, H)
        hidden = per_hidden.sum(1)  # (N, H)
        keep = image < n_data
        selection = torch.sparse_coo_tensor(torch.stack([image[keep], rows[keep]]),
                                            torch.ones(int(keep.sum()), device=act.device),
                                            (n_data, self.weight.shape[0]), check_invariants=False, is_coalesced=True)
        grads["weight"] += torch.sparse.mm(selection.t(), hidden)
        grads["hidden_bias"] += hidden.sum(0)
        grads["label_weight"] += per_hidden.sum(0)
        grads["label_bias"] += delta.sum(0) * (weight / n_data)

    @torch.no_grad()
    def visible_mode(self, h: torch.Tensor) -> torch.Tensor:
        """The most probable level of every site given hidden states, (N, S) uint8."""
        return self.visible_logits(h).argmax(-1).to(torch.uint8)

    @torch.no_grad()
    def pseudo_log_likelihood(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                              site_chunk: int = 49) -> torch.Tensor:
        """sum_i log p(v_i | v_-i) per image (labels clamped when given), (N,)."""
        n, levels = len(x), self.config.levels
        flat = x.reshape(n, -1).long()
        act = self.hidden_activation(x, labels)  # (N, H)
        w = F.pad(self.weight.view(self.sites, levels - 1, -1), (0, 0, 1, 0))  # (S, L, H), level 0 rows 0
        b = F.pad(self.visible_bias.view(self.sites, levels - 1), (1, 0))  # (S, L)
        total = torch.zeros(n, dtype=torch.float64, device=x.device)
        for start in range(0, self.sites, site_chunk):
            idx = torch.arange(start, min(start + site_chunk, self.sites), device=x.device)
            current = flat[:, idx]  # (N, s)
            w_sites = w[idx]  # (s, L, H)
            w_current = w_sites[torch.arange(len(idx), device=x.device)[None, :], current]  # (N, s, H)
            changed = act[:, None, None, :] - w_current[:, :, None, :] + w_sites[None]  # (N, s, L, H)
            logp = torch.log_softmax(b[idx][None] + F.softplus(changed).sum(-1), dim=-1)
            total += torch.gather(logp, -1, current.unsqueeze(-1)).squeeze(-1).sum(1).double()
        return total


# ----------------------------------------------------------------------------- annealing

def power_schedule(steps: int, power: float) -> np.ndarray:
    """beta_k = (k / steps) ** power, k = 0..steps: dense near 0 for power > 1, where the
    intermediate distributions change fastest with beta when the base is the data's
    marginals."""
    if steps < 1:
        raise ValueError("annealing needs at least one step")
    if power <= 0:
        raise ValueError("the schedule's power must be positive")
    return np.linspace(0.0, 1.0, steps + 1) ** power


class _Annealer:
    """f_beta and the block-Gibbs kernel T_beta of the path from p0 to the RBM, with h
    (and y) summed out of f_beta. ``base`` (S, L) is log p0 of the independent model."""

    def __init__(self, model: CategoricalRBM, base_log_probs: np.ndarray) -> None:
        self.model = model
        logp = torch.as_tensor(np.asarray(base_log_probs, dtype=np.float64).reshape(model.sites, -1))
        # the base in the model's gauge (level 0 = 0), and its log normaliser
        self.base = (logp[:, 1:] - logp[:, :1]).float()  # (S, L-1)
        self.log_z_base = float(-logp[:, 0].sum()) + model.config.hidden * math.log(2.0) + (
            math.log(model.config.classes) if model.conditional else 0.0)
        self.base_logits = F.pad(self.base, (1, 0))  # (S, L)
        self.shape = (model.config.height, model.config.width)

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """base . v, b . v (float64) and a(v) (float32) of a batch."""
        m = self.model
        rows, offsets, _ = m.active_rows(x)
        base_v = F.embedding_bag(rows, self.base.reshape(-1, 1), offsets, mode="sum")[:, 0].double()
        field = F.embedding_bag(rows, m.visible_bias[:, None], offsets, mode="sum")[:, 0].double()
        act = F.embedding_bag(rows, m.weight, offsets, mode="sum") + m.hidden_bias
        return base_v, field, act

    def log_f(self, parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
              beta: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """f_beta of a batch (float64) and, with labels, the per-label scores
        beta d_y + sum_j softplus(beta (a_j + U_yj)) that T_beta draws y from. The softplus
        terms are float32 (rounding ~1e-5 nats per image per step, far below the
        estimators' noise) and summed per image in float64."""
        m = self.model
        base_v, field, act = parts
        value = (1.0 - beta) * base_v + beta * field
        if not m.conditional:
            return value + F.softplus(beta * act).sum(1, dtype=torch.float64), None
        scores = beta * m.label_bias + F.softplus(beta * (act[:, None, :] + m.label_weight[None])).sum(-1)
        return value + torch.logsumexp(scores.double(), dim=1), scores

    def transition(self, x: torch.Tensor, act: torch.Tensor, beta: float, scores: torch.Tensor | None,
                   generator: torch.Generator | None) -> torch.Tensor:
        """One step of T_beta from x (activation ``act``; label ``scores`` from ``log_f``
        at this beta): y | v, then h | v, y, then v | h."""
        m = self.model
        a = act
        if m.conditional:
            y = torch.multinomial(torch.softmax(scores.float(), dim=1), 1, generator=generator)[:, 0]
            a = act + m.label_weight[y]
        p = torch.sigmoid(beta * a)
        h = (torch.rand(p.shape, generator=generator, device=p.device) < p).to(p.dtype)
        partial = m.hidden_product(h).add_(m.visible_bias).mul_(beta).add_(self.base.view(1, -1), alpha=1.0 - beta)
        partial = partial.view(len(h), m.sites, -1)
        return sample_above_reference(partial, generator).view(len(x), *self.shape)

    def sample_base(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        partial = self.base.expand(n, -1, -1)
        return sample_above_reference(partial, generator).view(n, *self.shape)


@torch.no_grad()
def ais_rbm(model: CategoricalRBM, base_log_probs: np.ndarray, chains: int, betas: np.ndarray,
            generator: torch.Generator | None = None) -> AISResult:
    """log Z of the RBM (labels and hidden units summed out) by AIS from p0."""
    annealer = _Annealer(model, base_log_probs)
    x = annealer.sample_base(chains, generator)
    log_w = torch.zeros(chains, dtype=torch.float64)
    for previous, beta in zip(betas[:-1], betas[1:]):
        parts = annealer._parts(x)
        now, scores = annealer.log_f(parts, float(beta))
        log_w += now - annealer.log_f(parts, float(previous))[0]
        x = annealer.transition(x, parts[2], float(beta), scores, generator)
    return summarise_log_weights(log_w.numpy(), annealer.log_z_base)


@torch.no_grad()
def raise_log_prob(model: CategoricalRBM, base_log_probs: np.ndarray, images: torch.Tensor, betas: np.ndarray,
                   generator: torch.Generator | None = None) -> np.ndarray:
    """Reverse annealed importance sampling: one stochastic lower bound on log p(v) per image.

    From v_K = v, v_{k-1} ~ T_{beta_k}(. | v_k) (block Gibbs is reversible), and
    log p-hat(v) = f_1(v) - log Z0 - sum_{k=1..K} [f_{beta_k}(v_{k-1}) - f_{beta_{k-1}}(v_{k-1})].
    """
    annealer = _Annealer(model, base_log_probs)
    x = images.to(torch.uint8)
    parts = annealer._parts(x)
    value, scores = annealer.log_f(parts, 1.0)
    total = value - annealer.log_z_base
    for k in range(len(betas) - 1, 0, -1):
        x = annealer.transition(x, parts[2], float(betas[k]), scores, generator)
        parts = annealer._parts(x)
        now = annealer.log_f(parts, float(betas[k]))[0]
        below, scores = annealer.log_f(parts, float(betas[k - 1]))
        total -= now - below
    return total.numpy()
