"""Discrete Renormalising Generative Model (RGM) of Friston et al. 2024 on 32x32 MNIST.

"From pixels to planning: scale-free active inference" (arXiv 2407.20292). The model is
a tree of categorical factors:

    class (10) -> level 4 (1x1 factor) -> level 3 (2x2) -> level 2 (4x4) -> level 1 (8x8)
    -> outcomes: the quantised singular variates of each 4x4-pixel group.

Every parent factor owns a 2x2 block of child factors, so the graph is a tree and one
bottom-up sweep followed by one top-down sweep gives the exact posterior marginals and
the exact log evidence (the ELBO at its optimum). Likelihoods are Dirichlet-categorical
tensors held densely (padded to the largest state count of a level); structure learning
fills them with one-hot columns, active learning adds counts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import special

# ----------------------------------------------------------------------------------
# configuration


@dataclass
class RGMConfig:
    image_size: int = 32
    group_size: int = 4               # pixels per side of a level-1 group (tile)
    max_modes: int = 16               # singular vectors kept per group at most
    sv_threshold: float = 0.05        # keep modes with s_k / s_1 above this
    intensity: str = "paper"          # "paper": rank -> exp(-(n - rank)^2 / (width n)); "linear": rank / n
    histogram_width: float = 24.0     # width of the paper's equalisation curve
    n_bins: int = 7                   # quantisation levels per singular variate (odd: one centred on 0)
    bin_width: float = 0.8            # bin width in standard deviations of the variate
    block: int = 2                    # children per side grouped into one parent
    concentration: float = 1.0 / 16   # Dirichlet prior scale of structure-learned likelihoods
    top_concentration: float = 1.0 / 128  # ... of the class -> top-state mapping
    prior_floor: float = 1.0 / 64     # pseudo-count (relative to concentration) on unseen entries
    beta: float = 512.0               # precision of the accept / reject choice in active learning
    acceptance: str = "efe"           # "efe": evidence gain + beta x MI gain > 0; "mi": MI gain > 0; "all"
    stochastic_acceptance: bool = True
    top_k: int = 8                    # posterior columns updated per factor (the rest are < tol)
    tol: float = 1e-3
    n_classes: int = 10

    def __post_init__(self) -> None:
        if self.image_size % self.group_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of group_size {self.group_size}")
        grid = self.image_size // self.group_size
        n = grid
        while n > 1:
            if n % self.block:
                raise ValueError(f"group grid {grid} cannot be halved down to 1x1 by blocks of {self.block}")
            n //= self.block
        if self.n_bins < 2 or self.n_bins % 2 == 0:
            raise ValueError(f"n_bins must be odd and >= 3 so that one bin is centred on 0, got {self.n_bins}")
        if not 1 <= self.max_modes <= self.group_size**2:
            raise ValueError(f"max_modes must be in [1, {self.group_size**2}], got {self.max_modes}")
        if self.intensity not in {"paper", "linear"}:
            raise ValueError(f"intensity must be 'paper' or 'linear', got {self.intensity!r}")
        if self.acceptance not in {"efe", "mi", "all"}:
            raise ValueError(f"acceptance must be 'efe', 'mi' or 'all', got {self.acceptance!r}")

    @property
    def grid(self) -> int:
        return self.image_size // self.group_size

    @property
    def level_grids(self) -> list[int]:
        """Factor grid side per level, bottom (level 1) to top: e.g. [8, 4, 2, 1]."""
        sides, n = [], self.grid
        while True:
            sides.append(n)
            if n == 1:
                return sides
            n //= self.block

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "RGMConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown RGM hierarchy keys {sorted(unknown)}")
        return cls(**spec)


# ----------------------------------------------------------------------------------
# SVD quantisation of 4x4 groups


def intensities(images: np.ndarray, kind: str = "paper", width: float = 24.0) -> np.ndarray:
    """Rank-equalised uint8 images (each pixel = its rank scaled to 0..255) -> [0, 1].

    ``paper`` applies the equalisation curve of the DEM_MNIST_RGM demo, exp(-(n - rank)^2 /
    (width n)) for n pixels: only the brightest quarter or so of the pixels stays above 0,
    so the background is flat and the strokes carry the variance. ``linear`` keeps the
    uniform histogram of the cache. Float input is taken as already mapped.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got shape {images.shape}")
    if images.dtype != np.uint8:
        return images.astype(np.float64)
    u = images.astype(np.float64) / 255.0
    if kind == "linear":
        return u
    n = images.shape[1] * images.shape[2]
    rank = u * (n - 1) + 1
    return np.exp(-((rank - n) ** 2) / (width * n))


def to_groups(images: np.ndarray, group: int) -> np.ndarray:
    """(N, H, W) images in [0, 1] -> (N, G, group*group), groups in row-major order."""
    x = np.asarray(images, dtype=np.float64)
    n, h, w = x.shape
    gh, gw = h // group, w // group
    return x.reshape(n, gh, group, gw, group).transpose(0, 1, 3, 2, 4).reshape(n, gh * gw, group * group)


def from_groups(patches: np.ndarray, group: int) -> np.ndarray:
    n, g, _ = patches.shape
    side = int(round(math.sqrt(g)))
    return patches.reshape(n, side, side, group, group).transpose(0, 1, 3, 2, 4).reshape(n, side * group, side * group)


@dataclass
class Quantiser:
    """Per-group centred SVD; each kept singular variate is cut into n_bins bins centred on 0.

    ``basis[g, k]`` is mode k of group g (zero where the group keeps fewer modes);
    ``scale[g, k]`` the variate's standard deviation; ``n_modes[g]`` the modes kept.
    """

    mean: np.ndarray      # (G, P)
    basis: np.ndarray     # (G, M, P)
    scale: np.ndarray     # (G, M)
    n_modes: np.ndarray   # (G,)
    group: int
    n_bins: int
    bin_width: float
    intensity: str = "paper"
    histogram_width: float = 24.0

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 cache images -> the [0, 1] intensities the SVD works on."""
        return intensities(images, self.intensity, self.histogram_width)

    @property
    def centres(self) -> np.ndarray:
        half = self.n_bins // 2
        return (np.arange(self.n_bins) - half) * self.bin_width

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Images -> bin indices (N, G, M) int8; padded modes hold the centre bin."""
        patches = to_groups(self.prepare(images), self.group) - self.mean
        z = np.einsum("ngp,gmp->ngm", patches, self.basis) / self.scale
        half = self.n_bins // 2
        return np.clip(np.rint(z / self.bin_width) + half, 0, self.n_bins - 1).astype(np.int8)

    def decode_expected(self, probs: np.ndarray) -> np.ndarray:
        """Bin probabilities (N, G, M, n_bins) -> images (N, H, W) in [0, 1] (expected variates)."""
        z = probs @ self.centres * self.scale
        patches = self.mean + np.einsum("ngm,gmp->ngp", z, self.basis)
        return np.clip(from_groups(patches, self.group), 0.0, 1.0)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Bin indices (N, G, M) -> images (N, H, W) in [0, 1]."""
        return self.decode_expected(np.eye(self.n_bins)[codes.astype(np.int64)])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"q_mean": self.mean, "q_basis": self.basis, "q_scale": self.scale, "q_n_modes": self.n_modes,
                "q_meta": np.array([self.group, self.n_bins, self.bin_width, self.histogram_width]),
                "q_intensity": np.array(self.intensity)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Quantiser":
        group, n_bins, width, histogram_width = a["q_meta"]
        return cls(a["q_mean"], a["q_basis"], a["q_scale"], a["q_n_modes"], int(group), int(n_bins), float(width),
                   str(a["q_intensity"]), float(histogram_width))


def fit_quantiser(images: np.ndarray, config: RGMConfig) -> Quantiser:
    """Fit the per-group SVD on training images only."""
    patches = to_groups(intensities(images, config.intensity, config.histogram_width), config.group_size)
    n, g, p = patches.shape
    mean = patches.mean(axis=0)
    basis = np.zeros((g, config.max_modes, p))
    scale = np.ones((g, config.max_modes))
    n_modes = np.zeros(g, dtype=np.int64)
    for j in range(g):
        centred = patches[:, j] - mean[j]
        # the right singular vectors from the small (P, P) scatter matrix: same basis as
        # the SVD of the (N, P) data, without touching an N x N factor
        eigval, eigvec = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(eigval)[::-1]
        s = np.sqrt(np.maximum(eigval[order], 0.0))
        vt = eigvec[:, order].T
        keep = int(min(config.max_modes, np.sum(s / max(s[0], 1e-12) > config.sv_threshold)))
        keep = max(keep, 1)
        n_modes[j] = keep
        basis[j, :keep] = vt[:keep]
        scale[j, :keep] = np.maximum(s[:keep] / math.sqrt(n), 1e-8)
    return Quantiser(mean, basis, scale, n_modes, config.group_size, config.n_bins, config.bin_width,
                     config.intensity, config.histogram_width)


# ----------------------------------------------------------------------------------
# the hierarchy


def children_of(side: int, block: int) -> np.ndarray:
    """(parents, block*block) row-major indices of the child factors of each parent."""
    parent_side = side // block
    out = np.empty((parent_side * parent_side, block * block), dtype=np.int64)
    for pr in range(parent_side):
        for pc in range(parent_side):
            kids = [(pr * block + i) * side + pc * block + j for i in range(block) for j in range(block)]
            out[pr * parent_side + pc] = kids
    return out


def _entropy(p: np.ndarray, axis: int) -> np.ndarray:
    return special.entr(p).sum(axis=axis)


def _normalise(a: np.ndarray, axis: int) -> np.ndarray:
    total = a.sum(axis=axis, keepdims=True)
    return a / np.where(total > 0, total, 1.0)


def _logsafe(a: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(a, 1e-300))


@dataclass
class StructureReport:
    n_states: list[list[int]]          # per level, per factor
    top_states: int
    seconds: float
    exemplar_top_state: np.ndarray     # (E,) top state of each exemplar


class RGM:
    """Dense padded Dirichlet tensors of the hierarchy plus exact tree inference.

    Tensors are stored column first (parent state before child rows) so that active
    learning gathers and scatters whole columns as contiguous blocks:
    level 1: ``a[0]`` (G, S1, M, n_bins) counts of outcome bin of mode M given the state;
    level l >= 2: ``a[l-1]`` (P, S_parent, B, S_child) counts of child b's state;
    class: ``a_class`` (n_classes, S_top) counts of top state given class.
    ``valid[l]`` (F_l, S_l) marks real (unpadded) states.
    """

    def __init__(self, config: RGMConfig, quantiser: Quantiser):
        self.config = config
        self.quantiser = quantiser
        self.children = [children_of(side, config.block) for side in config.level_grids[:-1]]
        self.a: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.a_class: np.ndarray | None = None
        self._cache: tuple[list[np.ndarray], np.ndarray] | None = None
        self._log_a1: np.ndarray | None = None
        self.mode_mask = (np.arange(config.max_modes)[None, :] < quantiser.n_modes[:, None]).astype(np.float64)

    @property
    def n_levels(self) -> int:
        return len(self.a)

    # -- structure learning ---------------------------------------------------------

    def canonical_codes(self, codes: np.ndarray) -> np.ndarray:
        """Padded modes set to the centre bin, so they never split states."""
        mask = self.mode_mask.astype(bool)[None]
        return np.where(mask, codes, self.config.n_bins // 2).astype(np.int8)

    def learn_structure(self, codes: np.ndarray, labels: np.ndarray) -> StructureReport:
        """Fast structure learning: the distinct child-state combinations of the exemplars
        become the parent's states, level by level, so the exemplars are coded losslessly."""
        started = time.perf_counter()
        cfg = self.config
        codes = self.canonical_codes(codes)
        n, g, m = codes.shape
        states = np.empty((n, g), dtype=np.int64)
        uniques = []
        for j in range(g):
            uniq, inverse = np.unique(codes[:, j, :], axis=0, return_inverse=True)
            states[:, j] = inverse.reshape(-1)
            uniques.append(uniq)
        n_states = [[len(u) for u in uniques]]
        a1 = np.zeros((g, max(n_states[0]), m, cfg.n_bins))
        for j, u in enumerate(uniques):
            a1[j, np.arange(len(u))[:, None], np.arange(m)[None, :], u] = 1.0
        self.a = [a1]
        for children in self.children:
            below, n_par = states, len(children)
            states = np.empty((n, n_par), dtype=np.int64)
            uniques = []
            for p in range(n_par):
                uniq, inverse = np.unique(below[:, children[p]], axis=0, return_inverse=True)
                states[:, p] = inverse.reshape(-1)
                uniques.append(uniq)
            counts = [len(u) for u in uniques]
            al = np.zeros((n_par, max(counts), children.shape[1], max(n_states[-1])))
            for p, u in enumerate(uniques):
                for k in range(children.shape[1]):
                    al[p, np.arange(len(u)), k, u[:, k]] = 1.0
            self.a.append(al)
            n_states.append(counts)
        top = states[:, 0]
        a_class = np.zeros((cfg.n_classes, n_states[-1][0]))
        np.add.at(a_class, (labels.astype(np.int64), top), 1.0)
        self.a_class = a_class
        self.valid = [np.arange(max(c))[None, :] < np.asarray(c)[:, None] for c in n_states]
        self._to_dirichlet()
        self.refresh()
        return StructureReport(n_states, n_states[-1][0], time.perf_counter() - started, top)

    def _to_dirichlet(self) -> None:
        """One-hot structure -> small-concentration Dirichlet priors, with a floor on the
        entries the exemplars never showed (so that a new image is not impossible)."""
        cfg = self.config
        q, floor = cfg.concentration, cfg.concentration * cfg.prior_floor
        mask = self.valid[0][:, :, None, None] * self.mode_mask[:, None, :, None]
        self.a[0] = (self.a[0] * q + floor) * mask
        for level in range(1, len(self.a)):
            child_valid = self.valid[level - 1][self.children[level - 1]]      # (P, B, S_child)
            mask = self.valid[level][:, :, None, None] & child_valid[:, None, :, :]
            self.a[level] = (self.a[level] * q + floor) * mask
        qt = cfg.top_concentration
        self.a_class = self.a_class * qt + qt * cfg.prior_floor

    # -- likelihoods ----------------------------------------------------------------

    def likelihoods(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Normalised tensors (expected likelihoods under the Dirichlet posteriors); cached,
        and patched column by column during active learning."""
        if self._cache is None:
            A = [_normalise(a, axis=3) for a in self.a]
            self._cache = (A, _normalise(self.a_class, axis=1))
            self._log_a1 = _logsafe(A[0]) * self.mode_mask[:, None, :, None]
        return self._cache

    def refresh(self) -> None:
        """Drop the cached likelihoods (after changing ``a`` or ``a_class`` by hand)."""
        self._cache = None

    # -- inference ------------------------------------------------------------------

    def infer(self, codes: np.ndarray, class_prior: np.ndarray | None = None) -> dict[str, Any]:
        """Exact posterior marginals for a batch by one bottom-up and one top-down sweep.

        Returns ``q`` (list per level of (N, F_l, S_l)), ``q_class`` (N, C) and ``elbo``
        (N,) = log p(outcomes) in nats, which the exact posterior attains.
        """
        A, A_class = self.likelihoods()
        cfg = self.config
        n = len(codes)
        g, m = self.mode_mask.shape
        onehot = np.eye(cfg.n_bins)[codes.astype(np.int64)]                      # (N, G, M, K)
        log_a1 = self._log_a1.reshape(g, -1, m * cfg.n_bins)                     # (G, S1, M*K)
        lam = np.matmul(onehot.transpose(1, 0, 2, 3).reshape(g, n, m * cfg.n_bins),
                        log_a1.transpose(0, 2, 1)).transpose(1, 0, 2)            # (N, G, S1)
        lams = [np.where(self.valid[0][None], lam, -np.inf)]
        messages = []                                                            # log Z_child(parent state)
        for level in range(1, len(A)):
            children = self.children[level - 1]
            below = lams[-1]
            shift = below.max(axis=2, keepdims=True)
            e = np.exp(below - shift)[:, children]                               # (N, P, B, S_c)
            z = np.einsum("npbc,psbc->npbs", e, A[level])                        # (N, P, B, S_p)
            log_z = _logsafe(z) + shift[:, children]
            lams.append(np.where(self.valid[level][None], log_z.sum(axis=2), -np.inf))
            messages.append(log_z)
        top = lams[-1][:, 0]                                                     # (N, S_top)
        shift = top.max(axis=1, keepdims=True)
        zc = np.exp(top - shift) @ A_class.T                                     # (N, C)
        prior = np.full((n, cfg.n_classes), 1.0 / cfg.n_classes) if class_prior is None else class_prior
        joint = _logsafe(zc) + shift + _logsafe(prior)
        jmax = joint.max(axis=1, keepdims=True)
        elbo = (jmax + np.log(np.exp(joint - jmax).sum(axis=1, keepdims=True)))[:, 0]
        q_class = np.exp(joint - elbo[:, None])
        # top-down: q(child) = exp(lam_child) * sum_parent A(child | parent) q(parent) / Z(parent)
        q_top = np.exp(top - shift) * ((q_class / np.maximum(zc, 1e-300)) @ A_class)
        qs = [(q_top / q_top.sum(axis=1, keepdims=True))[:, None, :]]
        for level in range(len(A) - 1, 0, -1):
            children = self.children[level - 1]
            log_z = messages[level - 1]
            ratio = qs[0][:, :, None, :] * np.exp(log_z.max(axis=3, keepdims=True) - log_z)
            back = np.einsum("npbs,psbc->npbc", ratio, A[level])                 # (N, P, B, S_c)
            below = lams[level - 1]
            q_child = np.zeros_like(below)
            q_child[:, children] = back * np.exp(below - below.max(axis=2, keepdims=True))[:, children]
            q_child /= np.maximum(q_child.sum(axis=2, keepdims=True), 1e-300)
            qs.insert(0, q_child)
        return {"q": qs, "q_class": q_class, "elbo": elbo}

    def classify(self, codes: np.ndarray, batch: int = 256, progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class (argmax of the top posterior) and ELBO of each image."""
        preds, elbos = [], []
        starts = range(0, len(codes), batch)
        for start in (progress(starts) if progress else starts):
            out = self.infer(codes[start:start + batch])
            preds.append(out["q_class"].argmax(axis=1))
            elbos.append(out["elbo"])
        return np.concatenate(preds), np.concatenate(elbos)

    # -- generation -----------------------------------------------------------------

    def predict_down(self, q_level: np.ndarray, level: int) -> np.ndarray:
        """Push (N, F, S) beliefs at ``level`` (1 = lowest) down to outcome-bin
        probabilities (N, G, M, n_bins) through the expected likelihoods."""
        A, _ = self.likelihoods()
        q = q_level
        for lev in range(level, 1, -1):
            children = self.children[lev - 2]
            below = np.einsum("nps,psbc->npbc", q, A[lev - 1])
            out = np.zeros((len(q), self.valid[lev - 2].shape[0], below.shape[-1]))
            out[:, children] = below
            q = out
        return np.einsum("ngs,gsmk->ngmk", q, A[0])

    def class_to_top(self, class_probs: np.ndarray) -> np.ndarray:
        """Predicted top-level beliefs (N, 1, S_top) under class beliefs (N, C)."""
        _, A_class = self.likelihoods()
        return (class_probs @ A_class)[:, None, :]

    def sample(self, class_index: Sequence[int], rng: np.random.Generator,
               modes_below_top: bool = False) -> np.ndarray:
        """Samples top-down from the given classes: outcome codes (N, G, M).

        Ancestral sampling at every level, or (``modes_below_top``) a sampled top state
        followed by the most likely state of every factor below it, which shows the
        digit a top state stands for without the independent noise of each factor.
        """
        A, A_class = self.likelihoods()

        def pick(p: np.ndarray) -> int:
            return int(np.argmax(p)) if modes_below_top else int(rng.choice(len(p), p=p / p.sum()))

        def draw(p: np.ndarray) -> int:
            return int(rng.choice(len(p), p=p / p.sum()))

        n = len(class_index)
        states = np.array([[draw(A_class[c])] for c in class_index])
        for lev in range(len(A) - 1, 0, -1):
            children = self.children[lev - 1]
            below = np.zeros((n, self.valid[lev - 1].shape[0]), dtype=np.int64)
            for i in range(n):
                for p in range(children.shape[0]):
                    for b in range(children.shape[1]):
                        below[i, children[p, b]] = pick(A[lev][p, states[i, p], b])
            states = below
        g, m = self.mode_mask.shape
        codes = np.full((n, g, m), self.config.n_bins // 2, dtype=np.int8)
        for i in range(n):
            for j in range(g):
                for k in range(int(self.quantiser.n_modes[j])):
                    codes[i, j, k] = pick(A[0][j, states[i, j], k])
        return codes

    # -- active learning ------------------------------------------------------------

    def _link_state(self) -> list[dict[str, Any]]:
        """Per link (one likelihood mapping per child of a factor, and the class map):
        summed column entropies ``h``, summed columns ``p`` and the column count ``n``,
        from which its mutual information under a flat prior over columns follows."""
        A, A_class = self.likelihoods()
        out = []
        for level, a in enumerate(A):
            valid = self.valid[level][:, :, None].astype(np.float64)             # (F, S, 1)
            h = (_entropy(a, axis=3) * valid).sum(axis=1)                        # (F, B)
            p = (a * valid[..., None]).sum(axis=1)                               # (F, B, R)
            out.append({"h": h, "p": p, "n": self.valid[level].sum(axis=1).astype(np.float64)[:, None]})
        out.append({"h": np.array([_entropy(A_class, axis=1).sum()]), "p": A_class.sum(axis=0)[None],
                    "n": np.array([[float(A_class.shape[0])]])})
        return out

    @staticmethod
    def _mi(h: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        return _entropy(p / n[..., None], axis=-1) - h / n

    def mutual_information(self) -> float:
        """Total mutual information (nats) of all the likelihood mappings."""
        total = 0.0
        for level, st in enumerate(self._link_state()):
            mi = self._mi(st["h"], st["p"], st["n"])
            total += float((mi * self.mode_mask).sum() if level == 0 else mi.sum())
        return total

    def learn_stream(self, codes: np.ndarray, labels: np.ndarray, seed: int = 0,
                     progress: Any = None) -> dict[str, np.ndarray]:
        """Active learning over a stream, one image at a time.

        Each image is inferred with its class clamped; the proposed Dirichlet counts are
        q(child) x q(parent) on every link (the observed bin at the bottom). They are taken
        in only when that lowers the free energy of the model: the gain in the image's log
        evidence (variational part) plus ``beta`` times the gain in the total mutual
        information of the likelihood mappings (expected part, the structural prior that
        precise mappings are plausible). The choice is a softmax over the two models
        (deterministic when not stochastic). ``delta_g`` is minus that score.
        """
        cfg = self.config
        rng = np.random.default_rng(seed)
        st = self._link_state()
        accepted = np.zeros(len(codes), dtype=bool)
        delta_g, delta_f, delta_mi = np.zeros(len(codes)), np.zeros(len(codes)), np.zeros(len(codes))
        mode_mask = self.mode_mask
        iterator = range(len(codes))
        for i in (progress(iterator) if progress else iterator):
            c = int(labels[i])
            out = self.infer(codes[i:i + 1], class_prior=np.eye(cfg.n_classes)[[c]])
            qs = [q[0] for q in out["q"]]
            proposals, d_mi = [], 0.0
            for level, a in enumerate(self.a):
                q_par = qs[level]                                                # (F, S)
                k = min(cfg.top_k, q_par.shape[1])
                cols = np.argpartition(-q_par, k - 1, axis=1)[:, :k]
                w = np.take_along_axis(q_par, cols, axis=1)
                w = np.where(w > cfg.tol, w, 0.0)
                f_idx = np.arange(len(q_par))[:, None]
                old = a[f_idx, cols]                                             # (F, k, B, R)
                if level == 0:
                    rows = np.eye(cfg.n_bins)[codes[i].astype(np.int64)] * mode_mask[:, :, None]
                else:
                    rows = qs[level - 1][self.children[level - 1]]               # (P, B, S_c)
                    rows = np.where(rows > cfg.tol, rows, 0.0)
                new = old + w[:, :, None, None] * rows[:, None]
                A_old, A_new = _normalise(old, axis=3), _normalise(new, axis=3)
                valid = np.take_along_axis(self.valid[level], cols, axis=1)[:, :, None]
                dh = ((_entropy(A_new, axis=3) - _entropy(A_old, axis=3)) * valid).sum(axis=1)
                dp = ((A_new - A_old) * valid[..., None]).sum(axis=1)
                h_new, p_new = st[level]["h"] + dh, st[level]["p"] + dp
                gain = self._mi(h_new, p_new, st[level]["n"]) - self._mi(st[level]["h"], st[level]["p"], st[level]["n"])
                d_mi += float((gain * mode_mask).sum() if level == 0 else gain.sum())
                proposals.append((f_idx, cols, new, A_new, h_new, p_new))
            # the class link: the clamped class's distribution over top states gains q(top)
            A_class = self.likelihoods()[1]
            new_c = self.a_class[c] + np.where(qs[-1][0] > cfg.tol, qs[-1][0], 0.0)
            A_new_c = new_c / new_c.sum()
            sc = st[-1]
            h_c = sc["h"] - _entropy(A_class[c], axis=0) + _entropy(A_new_c, axis=0)
            p_c = sc["p"] - A_class[c] + A_new_c
            d_mi += float((self._mi(h_c, p_c, sc["n"]) - self._mi(sc["h"], sc["p"], sc["n"])).sum())
            # try the update: patch the expected likelihoods, re-infer the image
            A, A_class = self.likelihoods()
            saved = []
            for level, (f_idx, cols, new, A_new, h_new, p_new) in enumerate(proposals):
                saved.append(A[level][f_idx, cols].copy())
                A[level][f_idx, cols] = A_new
                if level == 0:
                    saved_log = self._log_a1[f_idx, cols].copy()
                    self._log_a1[f_idx, cols] = _logsafe(A_new) * mode_mask[:, None, :, None]
            saved_c = A_class[c].copy()
            A_class[c] = A_new_c
            d_f = 0.0
            if cfg.acceptance == "efe":
                after = self.infer(codes[i:i + 1], class_prior=np.eye(cfg.n_classes)[[c]])
                d_f = float(after["elbo"][0] - out["elbo"][0])
            # expected free energy of taking the counts in, relative to leaving them out:
            # the image's evidence gain plus beta x the mutual information gain
            score = d_f + cfg.beta * d_mi
            delta_g[i], delta_f[i], delta_mi[i] = -score, d_f, d_mi
            if cfg.acceptance == "all":
                take = True
            elif cfg.acceptance == "mi":
                take = d_mi > 0
            elif cfg.stochastic_acceptance:
                take = rng.random() < special.expit(score)
            else:
                take = score > 0
            if not take:
                for level, (f_idx, cols, *_rest) in enumerate(proposals):
                    A[level][f_idx, cols] = saved[level]
                    if level == 0:
                        self._log_a1[f_idx, cols] = saved_log
                A_class[c] = saved_c
                continue
            accepted[i] = True
            for level, (f_idx, cols, new, A_new, h_new, p_new) in enumerate(proposals):
                self.a[level][f_idx, cols] = new
                st[level]["h"], st[level]["p"] = h_new, p_new
            self.a_class[c] = new_c
            sc["h"], sc["p"] = h_c, p_c
        return {"accepted": accepted, "delta_g": delta_g, "delta_f": delta_f, "delta_mi": delta_mi}

    # -- persistence ----------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"a{level}": a for level, a in enumerate(self.a)}
        out.update({f"valid{level}": v for level, v in enumerate(self.valid)})
        out["a_class"] = self.a_class
        out.update(self.quantiser.arrays())
        return out

    @classmethod
    def from_arrays(cls, config: RGMConfig, arrays: dict[str, np.ndarray]) -> "RGM":
        model = cls(config, Quantiser.from_arrays(arrays))
        levels = len(config.level_grids)
        model.a = [np.array(arrays[f"a{level}"]) for level in range(levels)]
        model.valid = [np.array(arrays[f"valid{level}"], dtype=bool) for level in range(levels)]
        model.a_class = np.array(arrays["a_class"])
        return model


def confident_half_accuracy(correct: np.ndarray, elbo: np.ndarray) -> float:
    """Accuracy on the half of the images with the higher ELBO (ties broken by order)."""
    order = np.argsort(-elbo, kind="stable")
    half = order[: max(1, len(order) // 2)]
    return float(np.mean(correct[half]))


def accuracy_by_elbo_quantile(correct: np.ndarray, elbo: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Accuracy within each ELBO decile (lowest ELBO first)."""
    order = np.argsort(elbo, kind="stable")
    return np.array([float(np.mean(correct[chunk])) for chunk in np.array_split(order, n_bins)])
