"""Discrete Renormalising Generative Model (RGM) of Friston et al. 2024 on 32x32 MNIST.

"From pixels to planning: scale-free active inference" (arXiv 2407.20292), as its SPM demo
``toolbox/DEM/DEM_MNIST_RGM.m`` runs it (spm/spm at 23a9359a6). Each departure of the
first port from the demo is a switch (:mod:`rgbench.models.rgm_config`) whose first value
is the demo's choice:

- pixels -> outcomes: :mod:`rgbench.models.rgm_quantiser`;
- the hierarchy (``HierarchyConfig``): a level-1 factor owns a 2x2 block of groups
  (``l1_block``), then 2x2 blocks up to one factor, then the class; structure learning
  makes the exemplars' distinct codes the states; Dirichlet priors normalise(A + p)
  (``prior``);
- active learning (``LearningConfig``): one image at a time with its class clamped,
  full outer-product counts (``counts``), each likelihood tensor's update taken in with
  weight sigmoid(beta x its mutual-information gain) (``gate``), forgetting eta;
- inference (``InferenceConfig``): one pass that predicts every factor's prior from
  its parent's prior, then updates beliefs bottom-up, modality after modality, dropping
  states below e^-prune (``scheme: spm_forward``), or exact tree message passing
  (``exact``). Each level's F is the sum of its log partition functions; the demo's ELBO
  for one image is F of the top structure level plus F of the class level (spm_MDP_VB_XXX
  restarts its running sum Q.F at every level when T = 1: its try block reads Q.s{L} before
  that cell exists).

The likelihood tensors of each level are one family (:class:`~rgbench.models.rgm_tensors.Tensors`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import special

from rgbench.models.rgm_config import RGMConfig
from rgbench.models.rgm_quantiser import Quantiser
from rgbench.models.rgm_tensors import Tensors

# states whose running posterior falls below e^-prune are dropped (spm_VBX); log
# likelihoods are floored at -32 (spm_log), so no outcome is ever impossible
LOG_FLOOR = -32.0
SUPPORT_FLOOR = math.exp(LOG_FLOOR)   # posterior mass below this receives no counts


def _logsafe(a: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(a, 1e-300))


# ----------------------------------------------------------------------------------
# the hierarchy


def children_of(side: int, block: int) -> np.ndarray:
    """(parents, block*block) indices of each parent's child factors; factors in
    column-major order on their grid (index i + side j), children column-major too."""
    parent_side = side // block
    out = np.empty((parent_side * parent_side, block * block), dtype=np.int64)
    for pj in range(parent_side):
        for pi in range(parent_side):
            out[pi + parent_side * pj] = [(pi * block + di) + side * (pj * block + dj)
                                          for dj in range(block) for di in range(block)]
    return out


@dataclass
class StructureReport:
    """What fast structure learning found, and its wall time."""

    n_states: list[list[int]]          # per structure level, per factor
    top_states: int
    seconds: float


def _unique_first(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in order of first appearance (spm_unique 'stable') and each row's index."""
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    inverse = rank[inverse.reshape(-1)]
    return rows[np.sort(first)], inverse


class RGM:
    """Structure learning, active learning and inference of the renormalising model.

    ``levels[0]`` holds the level-1 tensors: factor f, modality k (a mode of one of its
    groups), rows = bins, cols = f's states. ``levels[l]`` for l >= 1: parent factor p,
    child b, rows = the child's states, cols = p's states. ``levels[-1]`` is the class
    level: one tensor, rows = top states, cols = classes.
    """

    def __init__(self, config: RGMConfig, quantiser: Quantiser):
        self.config = config
        self.quantiser = quantiser
        h = config.hierarchy
        grid, lb = quantiser.groups.grid, h.l1_block
        side = grid // lb
        # level-1 factor f owns an l1_block x l1_block block of groups; its modalities are
        # (group, mode) pairs in column-major group order, then mode order
        owners = children_of(grid, lb) if lb > 1 else np.arange(grid * grid)[:, None]
        self.factor_groups = owners                                         # (F1, lb*lb)
        n_modes = quantiser.n_modes
        mods = [[(g, m) for g in owners[f] for m in range(int(n_modes[g]))] for f in range(side * side)]
        k_max = max(len(m) for m in mods)
        self.mod_group = np.zeros((side * side, k_max), dtype=np.int64)
        self.mod_mode = np.zeros((side * side, k_max), dtype=np.int64)
        self.mod_valid = np.zeros((side * side, k_max), dtype=bool)
        for f, pairs in enumerate(mods):
            for k, (g, m) in enumerate(pairs):
                self.mod_group[f, k], self.mod_mode[f, k], self.mod_valid[f, k] = g, m, True
        self.children = [children_of(s, h.block) for s in config.level_sides[:-1]]
        self.levels: list[Tensors] = []
        self.n_states: list[np.ndarray] = []                               # per structure level (F_l,)

    # -- layout helpers -------------------------------------------------------------

    @property
    def n_structure_levels(self) -> int:
        return len(self.n_states)

    def modality_codes(self, codes: np.ndarray) -> np.ndarray:
        """(N, G, M) codes -> (N, F1, K) outcome of each level-1 modality (0 on padding)."""
        out = codes[:, self.mod_group, self.mod_mode].astype(np.int64)
        return np.where(self.mod_valid[None], out, 0)

    # -- structure learning ---------------------------------------------------------

    def learn_structure(self, codes: np.ndarray, labels: np.ndarray) -> StructureReport:
        """Fast structure learning (spm_MB_structure_learning with dt = 1): a factor's
        states are the distinct combinations of its outcomes over the exemplars, in order
        of first appearance; each state's likelihood column is one-hot; level by level up
        to a single factor; the class level maps classes to the exemplars' top states."""
        started = time.perf_counter()
        h = self.config.hierarchy
        nb = self.quantiser.n_bins
        n_ex = len(codes)
        mod = self.modality_codes(codes)                                    # (E, F1, K)
        f1, k_max = self.mod_valid.shape
        states = np.empty((n_ex, f1), dtype=np.int64)
        uniques = []
        for f in range(f1):
            uniq, states[:, f] = _unique_first(mod[:, f, self.mod_valid[f]])
            uniques.append(uniq)
        counts = np.array([len(u) for u in uniques])
        onehot = np.zeros((f1, k_max, nb, counts.max()))
        for f, uniq in enumerate(uniques):
            k = np.flatnonzero(self.mod_valid[f])
            onehot[f, k[None, :], uniq, np.arange(len(uniq))[:, None]] = 1.0
        valid_rows = np.broadcast_to(self.mod_valid[:, :, None], (f1, k_max, nb))
        valid_cols = np.arange(counts.max())[None, :] < counts[:, None]
        structures = [(onehot, valid_rows, valid_cols, h.concentration)]
        self.n_states = [counts]
        for children in self.children:
            below, below_counts = states, self.n_states[-1]
            n_par, n_kids = children.shape
            states = np.empty((n_ex, n_par), dtype=np.int64)
            uniques = []
            for p in range(n_par):
                uniq, states[:, p] = _unique_first(below[:, children[p]])
                uniques.append(uniq)
            counts = np.array([len(u) for u in uniques])
            onehot = np.zeros((n_par, n_kids, below_counts.max(), counts.max()))
            for p, uniq in enumerate(uniques):
                for b in range(n_kids):
                    onehot[p, b, uniq[:, b], np.arange(len(uniq))] = 1.0
            valid_rows = np.arange(below_counts.max())[None, None, :] < below_counts[children][:, :, None]
            valid_cols = np.arange(counts.max())[None, :] < counts[:, None]
            structures.append((onehot, valid_rows, valid_cols, h.concentration))
            self.n_states.append(counts)
        top = states[:, 0]
        n_top = int(self.n_states[-1][0])
        cls = np.zeros((1, 1, n_top, h.n_classes))
        np.add.at(cls, (0, 0, top, labels.astype(np.int64)), 1.0)
        # a class with no exemplar keeps an all-zero structure column; its prior is flat
        structures.append((cls, np.ones((1, 1, n_top), dtype=bool), np.ones((1, h.n_classes), dtype=bool),
                           h.top_concentration))
        self.levels = [Tensors(self._prior(*s), s[1], s[2]) for s in structures]
        return StructureReport([c.tolist() for c in self.n_states], n_top, time.perf_counter() - started)

    def _prior(self, onehot: np.ndarray, valid_rows: np.ndarray, valid_cols: np.ndarray, p: float) -> np.ndarray:
        """Dirichlet counts from the one-hot structure (spm_mdp2rdp)."""
        h = self.config.hierarchy
        mask = valid_rows[:, :, :, None] & valid_cols[:, None, None, :]
        if h.prior == "scaled":       # the first port: p x onehot + p x floor
            a = (onehot + h.prior_floor) * p
        else:
            a = onehot + p
        a = a * mask
        if h.prior == "spm2024":      # normalised columns (spm_mdp2rdp at 23a9359a6)
            total = a.sum(axis=2, keepdims=True)
            a = a / np.where(total > 0, total, 1.0)
        return a

    # -- inference ------------------------------------------------------------------
    # Beliefs carry the families' spare entry: (N, F, S + 1) with the last state always 0.

    def _pad_classes(self, class_prior: np.ndarray | None, n: int) -> np.ndarray:
        c = self.config.hierarchy.n_classes
        prior = np.full((n, c), 1.0 / c) if class_prior is None else np.asarray(class_prior, dtype=np.float64)
        return np.concatenate([prior, np.zeros((n, 1))], axis=1)

    def _spread(self, level: int, per_child: np.ndarray) -> np.ndarray:
        """(N, P, B, X) values per (parent, child) of family ``level`` -> (N, F, X) per
        child factor of structure level ``level - 1``."""
        kids = self.children[level - 1]
        out = np.zeros((len(per_child), kids.size, per_child.shape[-1]))
        out[:, kids] = per_child
        return out

    def top_down_priors(self, class_prior: np.ndarray) -> list[np.ndarray]:
        """Every factor's prior predicted from its parent's prior (the demo's D), per
        structure level (N, F_l, S_l + 1), bottom first; ``class_prior`` (N, C + 1)."""
        priors = [self.levels[-1].down(class_prior[:, None, :])[:, 0]]       # (N, 1, S_top + 1)
        for level in range(len(self.children), 0, -1):
            priors.insert(0, self._spread(level, self.levels[level].down(priors[0])))
        return priors

    def _sequential(self, prior: np.ndarray, likelihood: Callable[[int, np.ndarray | None], np.ndarray], steps: int,
                    compact_at: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """spm_VBX: beliefs (N, F, S) updated by one modality after another, each time
        first dropping the states at or below e^-prune; returns the posterior and the
        summed log partition functions (N, F), each floored at -32 as spm_log is.

        ``likelihood(k, index)`` gives modality k's likelihood (N, F, S), 1 on padding,
        or only at the states ``index`` (N, F, S') once the beliefs are compacted: at the
        steps ``compact_at`` the dropped states leave the arrays (a speed-up only)."""
        prune = self.config.inference.prune
        threshold = math.exp(-prune) if prune is not None else 0.0
        q, index = prior.copy(), None
        z = np.empty((steps, *q.shape[:2]))
        for k in range(steps):
            if threshold:
                q *= q > threshold
                if k in compact_at:
                    width = int((q > 0).sum(axis=2).max())
                    if width < q.shape[2] // 2:
                        keep = np.argsort(-q, axis=2, kind="stable")[:, :, :width]
                        q = np.take_along_axis(q, keep, axis=2)
                        index = keep if index is None else np.take_along_axis(index, keep, axis=2)
            q *= likelihood(k, index)
            np.sum(q, axis=2, out=z[k])
            q /= z[k][..., None]
        if index is not None:
            full = np.zeros(prior.shape)
            np.put_along_axis(full, index, q, axis=2)
            q = full
        return q, np.maximum(np.log(z), LOG_FLOOR).sum(axis=0)

    def infer_forward(self, codes: np.ndarray, class_prior: np.ndarray | None = None) -> dict[str, Any]:
        """The demo's inference (spm_MDP_VB_XXX with T = 1): priors predicted top-down from
        the parents' priors, then one bottom-up pass of sequential updates; a parent sees
        each child's posterior q through A' q. Returns ``q`` (per structure level,
        (N, F_l, S_l + 1)), ``q_class`` (N, C), ``elbo_levels`` (N, levels + 1): each level's
        summed log partition functions, and ``elbo``: the demo's (top structure level + class)
        or, with ``elbo: sum_levels``, their sum."""
        n = len(codes)
        cp = self._pad_classes(class_prior, n)
        priors = self.top_down_priors(cp)
        mod = self.modality_codes(codes)                                    # (N, F1, K)
        level1 = self.levels[0]
        f1, k_max = self.mod_valid.shape
        inverse = level1.inverse_cols()
        # the likelihood floor of spm_log; padded modalities leave the beliefs alone
        padded = ~self.mod_valid[:, :, None]
        if len(codes) == 1:
            rows = level1.a[np.arange(f1)[:, None], np.arange(k_max), mod[0]] * inverse
            lik = np.where(padded, 1.0, np.maximum(rows, SUPPORT_FLOOR))[None]            # (1, F1, K, S + 1)
            q, z = self._sequential(priors[0], lambda k, index: lik[:, :, k], k_max)
        else:
            table = np.where(padded[:, :, None], 1.0, np.maximum(level1.a * inverse[:, :, None], SUPPORT_FLOOR))
            fi = np.arange(f1)[None, :]

            def lik_batch(k: int, index: np.ndarray | None) -> np.ndarray:
                if index is None:
                    return table[fi, k, mod[:, :, k]]
                return table[fi[..., None], k, mod[:, :, k, None], index]

            q, z = self._sequential(priors[0], lik_batch, k_max, compact_at=(4, 16))
        qs, levels = [q], [z.sum(axis=1)]
        for level, kids in enumerate(self.children, start=1):
            msg = np.maximum(self.levels[level].up(qs[-1][:, kids]), SUPPORT_FLOOR)   # (N, P, B, S + 1)
            q, z = self._sequential(priors[level], lambda b, index: msg[:, :, b], kids.shape[1])
            qs.append(q)
            levels.append(z.sum(axis=1))
        msg = np.maximum(self.levels[-1].up(qs[-1][:, None]), SUPPORT_FLOOR)  # (N, 1, 1, C + 1)
        q_class, z = self._sequential(cp[:, None, :], lambda b, index: msg[:, :, 0], 1)
        levels.append(z[:, 0])
        levels = np.stack(levels, axis=1)
        elbo = levels.sum(axis=1) if self.config.inference.elbo == "sum_levels" else levels[:, -2:].sum(axis=1)
        return {"q": qs, "q_class": q_class[:, 0, :-1], "elbo": elbo, "elbo_levels": levels}

    def _level1_log_likelihood(self, mod: np.ndarray) -> np.ndarray:
        """sum_k ln A1[f, k, o_k, s] for outcomes (N, F1, K): (N, F1, S + 1)."""
        level1 = self.levels[0]
        f1, k_max = self.mod_valid.shape
        if len(mod) <= 16:
            inverse = level1.inverse_cols()
            rows = level1.a[np.arange(f1)[None, :, None], np.arange(k_max)[None, None, :], mod] * inverse[None]
            return (np.maximum(_logsafe(rows), LOG_FLOOR) * self.mod_valid[None, :, :, None]).sum(axis=2)
        log_a = np.maximum(_logsafe(level1.expected()), LOG_FLOOR) * self.mod_valid[:, :, None, None]
        bins = log_a.shape[2]
        onehot = np.zeros((len(mod), f1, k_max * bins))
        flat = np.arange(k_max)[None, None, :] * bins + mod
        np.put_along_axis(onehot, flat, 1.0, axis=2)
        return np.matmul(onehot.transpose(1, 0, 2), log_a.reshape(f1, k_max * bins, -1)).transpose(1, 0, 2)

    def infer_exact(self, codes: np.ndarray, class_prior: np.ndarray | None = None,
                    marginals: bool = True) -> dict[str, Any]:
        """Exact posterior marginals and log evidence by one upward and one downward
        sweep of the tree that the tensors define."""
        n = len(codes)
        cp = self._pad_classes(class_prior, n)
        lam = self._level1_log_likelihood(self.modality_codes(codes))
        valid = [np.concatenate([t.valid_cols, np.zeros((len(t.valid_cols), 1), dtype=bool)], axis=1)
                 for t in self.levels]
        lams = [np.where(valid[0][None], lam, -np.inf)]
        messages = []
        for level, kids in enumerate(self.children, start=1):
            below = lams[-1]
            shift = below.max(axis=2, keepdims=True)
            z = self.levels[level].up(np.exp(below - shift)[:, kids])          # (N, P, B, S + 1)
            log_z = _logsafe(z) + shift[:, kids]
            lams.append(np.where(valid[level][None], log_z.sum(axis=2), -np.inf))
            messages.append(log_z)
        top = lams[-1]                                                         # (N, 1, S_top + 1)
        shift = top.max(axis=2, keepdims=True)
        zc = self.levels[-1].up(np.exp(top - shift)[:, :, None, :])[:, 0, 0]  # (N, C + 1)
        joint = _logsafe(zc) + shift[:, 0] + _logsafe(cp)
        elbo = special.logsumexp(joint, axis=1)
        q_class = np.exp(joint - elbo[:, None])
        if not marginals:
            return {"q_class": q_class[:, :-1], "elbo": elbo}
        back = self.levels[-1].down((q_class / np.maximum(zc, 1e-300))[:, None, :])[:, :, 0]   # (N, 1, S_top + 1)
        q_top = np.exp(top - shift) * back
        qs = [q_top / q_top.sum(axis=2, keepdims=True)]
        for level in range(len(self.children), 0, -1):
            kids = self.children[level - 1]
            log_z = messages[level - 1]
            ratio = qs[0][:, :, None, :] * np.exp(log_z.max(axis=3, keepdims=True) - log_z)
            ratio = np.where(np.isfinite(ratio), ratio, 0.0)
            back = self._spread(level, self.levels[level].down(ratio))
            below = lams[level - 1]
            q_child = back * np.exp(below - below.max(axis=2, keepdims=True))
            qs.insert(0, q_child / np.maximum(q_child.sum(axis=2, keepdims=True), 1e-300))
        return {"q": qs, "q_class": q_class[:, :-1], "elbo": elbo}

    def infer(self, codes: np.ndarray, class_prior: np.ndarray | None = None) -> dict[str, Any]:
        if self.config.inference.scheme == "exact":
            return self.infer_exact(codes, class_prior)
        return self.infer_forward(codes, class_prior)

    def classify(self, codes: np.ndarray, batch: int | None = None,
                 progress: Any = None) -> dict[str, np.ndarray]:
        """Predicted class and ELBOs of each image: ``elbo`` (the configured one),
        ``spm_elbo`` (the demo's), ``sum_levels`` and ``log_evidence`` (exact)."""
        batch = batch or self.config.inference.batch
        keys = ("pred", "elbo", "spm_elbo", "sum_levels", "log_evidence")
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        starts = range(0, len(codes), batch)
        for start in (progress(starts) if progress else starts):
            chunk = codes[start:start + batch]
            exact = self.infer_exact(chunk, marginals=False)
            if self.config.inference.scheme == "exact":
                out = exact
                levels = np.full((len(chunk), 2), np.nan)
            else:
                out = self.infer_forward(chunk)
                levels = out["elbo_levels"]
            parts["pred"].append(out["q_class"].argmax(axis=1))
            parts["spm_elbo"].append(levels[:, -2:].sum(axis=1))
            parts["sum_levels"].append(levels.sum(axis=1))
            parts["log_evidence"].append(exact["elbo"])
            parts["elbo"].append(exact["elbo"] if self.config.inference.elbo == "exact" else out["elbo"])
        return {key: np.concatenate(value) for key, value in parts.items()}

    # -- active learning ------------------------------------------------------------

    def _support(self, q: np.ndarray, spare: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and values of the states that receive counts, padded with ``spare``
        (weight 0): (F, n) each; all states above SUPPORT_FLOOR, or the top_k above tol."""
        lc = self.config.learning
        floor = lc.tol if lc.counts == "top_k" else SUPPORT_FLOOR
        keep = q > floor
        width = max(1, int(keep.sum(axis=-1).max()))
        if lc.counts == "top_k":
            width = min(width, lc.top_k)
        order = np.argsort(-np.where(keep, q, -1.0), axis=-1, kind="stable")[..., :width]
        values = np.take_along_axis(q, order, axis=-1)
        on = np.take_along_axis(keep, order, axis=-1)
        return np.where(on, order, spare), np.where(on, values, 0.0)

    def learn_image(self, codes: np.ndarray, label: int) -> dict[str, Any]:
        """One image of the stream (codes (G, M)): infer with the class clamped, then offer
        every tensor its counts; returns the weights taken in, per level."""
        lc, h = self.config.learning, self.config.hierarchy
        clamp = np.eye(h.n_classes)[[label]]
        out = self.infer(codes[None], class_prior=clamp)
        qs = [q[0] for q in out["q"]]
        weights = []
        # level 1: the observed bin of each modality x the factor's posterior
        t = self.levels[0]
        P, B, R, S = t.shape
        mod = self.modality_codes(codes[None])[0]                            # (F1, K)
        cols, v = self._support(qs[0], S)
        weights.append(t.update(mod[:, :, None], np.ones((P, B, 1)), np.broadcast_to(cols[:, None], (P, B, cols.shape[1])),
                                np.broadcast_to(v[:, None], (P, B, v.shape[1])), lc.gate, lc.beta, lc.eta,
                                self.mod_valid))
        # levels above: the child's posterior x the parent's posterior
        for level, kids in enumerate(self.children, start=1):
            t = self.levels[level]
            P, B, R, S = t.shape
            rows, u = self._support(qs[level - 1], R)
            cols, v = self._support(qs[level], S)
            weights.append(t.update(rows[kids], u[kids], np.broadcast_to(cols[:, None], (P, B, cols.shape[1])),
                                    np.broadcast_to(v[:, None], (P, B, v.shape[1])), lc.gate, lc.beta, lc.eta,
                                    np.ones((P, B), dtype=bool)))
        # the class level: the top posterior x the clamped class
        t = self.levels[-1]
        _, _, R, S = t.shape
        rows, u = self._support(qs[-1], R)
        weights.append(t.update(rows[None], u[None], np.array([[[label]]]), np.ones((1, 1, 1)), lc.gate, lc.beta,
                                lc.eta, np.ones((1, 1), dtype=bool)))
        return {"weights": weights, "correct": int(np.argmax(out["q_class"][0]) == label)}

    def learn_stream(self, codes: np.ndarray, labels: np.ndarray, progress: Any = None,
                     record_every: int = 1) -> dict[str, np.ndarray]:
        """Active learning over a stream in order (the demo's spm_MNIST_train).

        Records per image the mean weight taken in per level (1..L, then the class), the
        class tensor's weight, and every ``record_every`` images the mutual information
        per level (the sum over its tensors)."""
        n = len(codes)
        n_levels = len(self.levels)
        mean_weight = np.zeros((n, n_levels))
        recorded = np.arange(record_every - 1, n, record_every)
        mi = np.zeros((len(recorded), n_levels))
        iterator = range(n)
        r = 0
        for i in (progress(iterator) if progress else iterator):
            step = self.learn_image(codes[i], int(labels[i]))
            for level, w in enumerate(step["weights"]):
                mask = self.mod_valid if level == 0 else np.ones_like(w, dtype=bool)
                mean_weight[i, level] = float(w[mask].mean())
            if r < len(recorded) and recorded[r] == i:
                mi[r] = self.mutual_information_per_level()
                r += 1
        return {"mean_weight": mean_weight, "class_weight": mean_weight[:, -1], "mi": mi, "mi_index": recorded}

    def mutual_information_per_level(self) -> np.ndarray:
        """Sum of the tensors' MI per level (structure levels bottom-up, then the class)."""
        out = []
        for level, t in enumerate(self.levels):
            mi = t.mutual_information()
            mask = self.mod_valid if level == 0 else np.ones_like(mi, dtype=bool)
            out.append(float(mi[mask].sum()))
        return np.array(out)

    # -- generation -----------------------------------------------------------------

    def predict_down(self, q_level: np.ndarray, level: int) -> np.ndarray:
        """Push (N, F, S + 1) beliefs at structure ``level`` (1 = lowest) down to
        outcome-bin probabilities (N, G, M, n_bins) through the expected likelihoods."""
        q = q_level
        for lev in range(level - 1, 0, -1):
            q = self._spread(lev, self.levels[lev].down(q))
        probs = self.levels[0].down(q)[..., :-1]                               # (N, F1, K, bins)
        g, m = self.quantiser.basis.shape[:2]
        out = np.zeros((len(q), g, m, self.quantiser.n_bins))
        out[..., self.quantiser.n_bins // 2] = 1.0                           # unused modes: the centre bin
        f_idx, k_idx = np.nonzero(self.mod_valid)
        out[:, self.mod_group[f_idx, k_idx], self.mod_mode[f_idx, k_idx]] = probs[:, f_idx, k_idx]
        return out

    def class_to_top(self, class_probs: np.ndarray) -> np.ndarray:
        """Predicted top-level beliefs (N, 1, S_top + 1) under class beliefs (N, C)."""
        return self.levels[-1].down(self._pad_classes(class_probs, len(class_probs))[:, None, :])[:, :, 0]

    def sample(self, class_index: Sequence[int], rng: np.random.Generator, modes_below_top: bool = False) -> np.ndarray:
        """Codes (N, G, M) sampled top-down from the given classes: ancestral sampling at
        every level, or (``modes_below_top``) a sampled top state and the most likely
        state of every factor and outcome below it."""
        A = [t.expected() for t in self.levels]

        def draw(p: np.ndarray) -> int:
            return int(rng.choice(len(p), p=p / p.sum()))

        def pick(p: np.ndarray) -> int:
            return int(np.argmax(p)) if modes_below_top else draw(p)

        n = len(class_index)
        states = np.array([[draw(A[-1][0, 0][:, c])] for c in class_index])
        for lev in range(len(self.children), 0, -1):
            kids = self.children[lev - 1]
            below = np.zeros((n, kids.size), dtype=np.int64)
            for i in range(n):
                for p in range(kids.shape[0]):
                    for b in range(kids.shape[1]):
                        below[i, kids[p, b]] = pick(A[lev][p, b][:, states[i, p]])
            states = below
        g, m = self.quantiser.basis.shape[:2]
        codes = np.full((n, g, m), self.quantiser.n_bins // 2, dtype=np.int8)
        for i in range(n):
            for f, k in zip(*np.nonzero(self.mod_valid)):
                codes[i, self.mod_group[f, k], self.mod_mode[f, k]] = pick(A[0][f, k][:-1, states[i, f]])
        return codes

    # -- persistence ----------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for level, t in enumerate(self.levels):
            P, B, R, S = t.shape
            out.update({f"a{level}": t.a[:, :, :R, :S], f"scale{level}": t.scale, f"rows{level}": t.valid_rows,
                        f"cols{level}": t.valid_cols})
        for level, c in enumerate(self.n_states):
            out[f"n_states{level}"] = c
        out.update(self.quantiser.arrays())
        return out

    @classmethod
    def from_arrays(cls, config: RGMConfig, arrays: dict[str, np.ndarray]) -> "RGM":
        model = cls(config, Quantiser.from_arrays(arrays))
        n_struct = len(config.level_sides)
        model.n_states = [np.array(arrays[f"n_states{level}"]) for level in range(n_struct)]
        model.levels = [Tensors(np.array(arrays[f"a{level}"]), np.array(arrays[f"rows{level}"]),
                                np.array(arrays[f"cols{level}"]), np.array(arrays[f"scale{level}"]))
                        for level in range(n_struct + 1)]
        return model

