"""Pixels -> outcomes of the discrete RGM (:mod:`rgbench.models.rgm`), as the SPM demo
``toolbox/DEM/DEM_MNIST_RGM.m`` makes them (spm_rgb2O, spm_tile, spm_svd at spm/spm 23a9359a6).

Each departure of the first port from the demo is a switch of
:class:`~rgbench.models.rgm_config.QuantiserConfig` whose first value is the demo's choice:
64 overlapping groups of pixels with Gaussian radial-basis weights (``tiling``), an
uncentred SVD per group (``center``), the modes kept by spm_svd's variance rule
(``mode_rule``), 7 bins per singular variate centred on linspace(-max|u|, max|u|) (``bins``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgbench.models.rgm_config import QuantiserConfig


def intensities(ranks: np.ndarray, width: float) -> np.ndarray:
    """Rank images -> the demo's equalisation curve exp(-(r - n)^2 / (width n)) in [0, 1].

    uint16 input holds ordinal ranks 1..n (the cache); uint8 input the first port's average
    ranks scaled to 0..255; float input is taken as intensities already.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got shape {ranks.shape}")
    n = ranks.shape[1] * ranks.shape[2]
    if ranks.dtype == np.uint16:
        r = np.arange(n + 1, dtype=np.float64)                  # a lookup table over ranks 0..n
    elif ranks.dtype == np.uint8:
        r = np.arange(256, dtype=np.float64) / 255.0 * (n - 1) + 1
    else:
        return ranks.astype(np.float64)
    return np.exp(-((r - n) ** 2) / (width * n))[ranks]


@dataclass
class Groups:
    """Pixel groups on a ``grid`` x ``grid`` lattice of centres, in column-major order
    (group ``i + grid j`` sits in grid row i, column j, as spm_tile orders them).
    ``pixels[g, :size[g]]`` are flat (row-major) pixel indices, ``weights`` their weights
    (zero on padding)."""

    pixels: np.ndarray    # (G, P) int
    weights: np.ndarray   # (G, P)
    size: np.ndarray      # (G,)
    grid: int


def make_groups(config: QuantiserConfig) -> Groups:
    """spm_tile: centres at linspace(tile/2, side - tile/2) (1-based pixel coordinates);
    ``rbf``: pixels within ``rbf_radius`` belong to a group, weighted by a Gaussian of SD
    ``rbf_sigma`` normalised so that each pixel's weights over all groups sum to 1;
    ``square``: the disjoint tile x tile blocks, weight 1."""
    side, d, grid = config.image_size, config.tile, config.grid
    rows, cols = np.divmod(np.arange(side * side), side)
    members, weights = [], []
    if config.tiling == "square":
        for j in range(grid):
            for i in range(grid):
                inside = (rows // d == i) & (cols // d == j)
                members.append(np.flatnonzero(inside))
                weights.append(np.ones(int(inside.sum())))
    else:
        centres = np.linspace(d / 2, side - d / 2, grid)
        dist2 = np.stack([((rows + 1) - centres[i]) ** 2 + ((cols + 1) - centres[j]) ** 2
                          for j in range(grid) for i in range(grid)])             # (G, pixels)
        h = np.exp(-dist2 / (2 * config.rbf_sigma ** 2))
        h /= h.sum(axis=0, keepdims=True)
        for g in range(grid * grid):
            inside = np.flatnonzero(np.sqrt(dist2[g]) < config.rbf_radius)
            members.append(inside)
            weights.append(h[g, inside])
    size = np.array([len(m) for m in members])
    pixels = np.zeros((len(members), size.max()), dtype=np.int64)
    w = np.zeros((len(members), size.max()))
    for g, (m, v) in enumerate(zip(members, weights)):
        pixels[g, :len(m)], w[g, :len(m)] = m, v
    return Groups(pixels, w, size, grid)


@dataclass
class Quantiser:
    """Per-group SVD and binning: ``basis[g, k]`` is mode k of group g over its pixels
    (zero past ``n_modes[g]``), ``mean[g]`` the subtracted mean (zero when uncentred), and
    the bins of mode k are centred on ``low[g, k] + step[g, k] * (0 .. n_bins - 1)``."""

    groups: Groups
    mean: np.ndarray      # (G, P)
    basis: np.ndarray     # (G, M, P)
    n_modes: np.ndarray   # (G,)
    low: np.ndarray       # (G, M)
    step: np.ndarray      # (G, M)
    n_bins: int
    histogram_width: float
    image_size: int

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Rank images -> the [0, 1] intensities the SVD works on."""
        return intensities(images, self.histogram_width)

    def weighted(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W) intensities -> (N, G, P) weighted group pixels."""
        flat = x.reshape(len(x), -1)
        return flat[:, self.groups.pixels] * self.groups.weights[None]

    def variates(self, images: np.ndarray, chunk: int = 2000) -> np.ndarray:
        """(N, G, M) singular variates (projections) of rank images."""
        out = np.zeros((len(images), *self.basis.shape[:2]))
        for start in range(0, len(images), chunk):
            y = self.weighted(self.prepare(images[start:start + chunk])) - self.mean[None]
            out[start:start + chunk] = np.einsum("ngp,gmp->ngm", y, self.basis)
        return out

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Rank images -> bin indices (N, G, M) int8 (the nearest bin centre); modes past
        ``n_modes`` hold the centre bin."""
        z = np.rint((self.variates(images) - self.low[None]) / self.step[None])
        codes = np.clip(z, 0, self.n_bins - 1).astype(np.int8)
        kept = np.arange(self.basis.shape[1])[None, :] < self.n_modes[:, None]
        return np.where(kept[None], codes, self.n_bins // 2).astype(np.int8)

    def decode_expected(self, probs: np.ndarray) -> np.ndarray:
        """Bin probabilities (N, G, M, n_bins) -> images (N, H, W): the expected variates
        projected back, each group's weighted pixels summed (weights sum to 1 per pixel)."""
        centres = self.low[..., None] + self.step[..., None] * np.arange(self.n_bins)
        u = np.einsum("ngmk,gmk->ngm", probs, centres)
        kept = (np.arange(self.basis.shape[1])[None, :] < self.n_modes[:, None])[None]
        y = self.mean[None] + np.einsum("ngm,gmp->ngp", np.where(kept, u, 0.0), self.basis)
        side = self.image_size
        out = np.zeros((len(probs), side * side))
        valid = self.groups.weights > 0
        for g in range(len(self.n_modes)):
            np.add.at(out, (slice(None), self.groups.pixels[g, valid[g]]), y[:, g, valid[g]])
        return np.clip(out.reshape(-1, side, side), 0.0, 1.0)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.decode_expected(np.eye(self.n_bins)[codes.astype(np.int64)])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"q_pixels": self.groups.pixels, "q_weights": self.groups.weights, "q_size": self.groups.size,
                "q_mean": self.mean, "q_basis": self.basis, "q_n_modes": self.n_modes, "q_low": self.low,
                "q_step": self.step,
                "q_meta": np.array([self.groups.grid, self.n_bins, self.histogram_width, self.image_size])}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Quantiser":
        grid, n_bins, width, side = a["q_meta"]
        groups = Groups(a["q_pixels"], a["q_weights"], a["q_size"], int(grid))
        return cls(groups, a["q_mean"], a["q_basis"], a["q_n_modes"], a["q_low"], a["q_step"], int(n_bins),
                   float(width), int(side))


def fit_quantiser(images: np.ndarray, config: QuantiserConfig) -> Quantiser:
    """Fit the per-group SVD and the bins on ``images`` (rank images), as spm_rgb2O."""
    groups = make_groups(config)
    x = intensities(images, config.histogram_width)
    y_all = x.reshape(len(x), -1)
    n_groups, width = groups.pixels.shape
    mean = np.zeros((n_groups, width))
    basis = np.zeros((n_groups, config.max_modes, width))
    low = np.zeros((n_groups, config.max_modes))
    step = np.ones((n_groups, config.max_modes))
    n_modes = np.zeros(n_groups, dtype=np.int64)
    half = config.n_bins // 2
    for g in range(n_groups):
        p = int(groups.size[g])
        y = y_all[:, groups.pixels[g, :p]] * groups.weights[g, :p]
        if config.center:
            mean[g, :p] = y.mean(axis=0)
            y = y - mean[g, :p]
        # right singular vectors from the (P, P) scatter matrix, as spm_svd does for tall data
        eigval, eigvec = np.linalg.eigh(y.T @ y)
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = np.maximum(eigval[order], 0.0), eigvec[:, order]
        if config.mode_rule == "spm":
            # spm_svd keeps lambda_k * n / sum(lambda) > 1/su over the n = channels x P
            # columns of the RGB data; the copies scale every eigenvalue alike
            keep = eigval * config.channel_copies * p / max(eigval.sum(), 1e-300) > 1.0 / config.su
        else:
            keep = np.sqrt(eigval / max(eigval[0], 1e-300)) > config.sv_threshold
        k = int(max(1, min(config.max_modes, keep.sum())))
        v = eigvec[:, :k]
        v = v * np.where(v[np.abs(v).argmax(axis=0), np.arange(k)] < 0, -1.0, 1.0)   # a fixed sign per mode
        basis[g, :k, :p] = v.T
        u = y @ v
        if config.bins == "maxabs":
            d = np.maximum(np.abs(u).max(axis=0), 1e-12)
            low[g, :k], step[g, :k] = -d, 2 * d / (config.n_bins - 1)
        else:
            sd = np.maximum(u.std(axis=0), 1e-12)
            low[g, :k], step[g, :k] = u.mean(axis=0) - half * config.bin_width * sd, config.bin_width * sd
        n_modes[g] = k
    return Quantiser(groups, mean, basis, n_modes, low, step, config.n_bins, config.histogram_width,
                     config.image_size)

