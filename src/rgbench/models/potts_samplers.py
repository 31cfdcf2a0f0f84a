"""Gibbs samplers for lattice Potts models: a fast checkerboard block sampler and the
plain sequential single-site reference.

On a 4-neighbour lattice the sites of one checkerboard colour are conditionally independent
given the other colour, so a whole colour is updated at once. The conditional of a site
with bias b and neighbours n_1..n_4 is

    p(x_i = l | rest) ~ exp(b_il) * prod_{n horizontal} e^{w_h [n = l]} * prod_{n vertical} e^{w_v [n = l]},

which needs no table: four compares and a few multiplications per level. Two backends:

- ``numba`` (CPUs): one JIT-compiled loop nest (numba/LLVM, no system compiler). The
  state is stored chains-innermost with a one-site border holding the sentinel level 4,
  which equals no real level, so boundary sites need no special case and the innermost
  loop over chains is branch-free float32 arithmetic that LLVM vectorises. Chains are
  cut into blocks of at most 256 that run all their sweeps while their state stays in
  cache (blocks are spread over threads). Uniforms come from a counter-based hash of
  (call seed, sweep, site, chain), so a chain's draws do not depend on how chains are
  blocked or on the thread count. Class-conditional models (one bias field per digit)
  keep chains grouped by class so each block reads one bias row: a per-chain gather of
  the bias would stop the vectorisation.
- ``torch`` (GPUs, or where numba is missing): the conditionals of every (site,
  neighbourhood byte) pair as a cumulative table, gathered for all chains of a colour in
  a few tensor operations.

Both are exact for the parameters they were last given (``set_parameters``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from rgbench.data.preprocess import LEVELS

# Both kernels are written for 4 levels: the numba loop draws from p0..p3 and the torch
# path's neighbourhood byte packs four neighbours of 2 bits each.
if LEVELS != 4:
    raise ImportError(f"the checkerboard samplers are written for 4 levels, LEVELS is {LEVELS}")
CONFIGS = LEVELS**4
SENTINEL = 4  # border level of the numba state: equal to no real level
BLOCK = 256  # chains per numba work item: 784 sites x 256 chains of uint8 stay in L2


# ----------------------------------------------------------------------------- numba kernel

try:  # numba is a regular dependency; without it the sampler falls back to the torch path
    import numba as nb
except ImportError:  # pragma: no cover - exercised only in an environment without numba
    nb = None

if nb is not None and "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's OpenMP pool keeps a worker spinning once set_num_threads has started it: a
    # second core busy for nothing (and counted as the job's CPU time). Its own work queue
    # sleeps between parallel regions.
    nb.config.THREADING_LAYER = "workqueue"


def numba_available() -> bool:
    return nb is not None


if nb is not None:
    _u32 = np.uint32

    # Numba does integer arithmetic in 64 bits: every step is cast back to uint32 so the
    # hash wraps as intended (and LLVM keeps 32-bit vector lanes).
    @nb.njit(inline="always", cache=True)
    def _mix(h):
        h = _u32(h ^ (h >> _u32(16)))
        h = _u32(h * _u32(0x85EBCA6B))
        h = _u32(h ^ (h >> _u32(13)))
        h = _u32(h * _u32(0xC2B2AE35))
        return _u32(h ^ (h >> _u32(16)))

    @nb.njit(boundscheck=False, fastmath=True, cache=True)
    def _update_run(x, left, right, up, down, key, first_chain, w0, w1, w2, w3, eh, ev):
        # x and its neighbours are slices starting at index 0 and the loop runs from a
        # literal 0: a possibly negative index would add wraparound selects and LLVM
        # would then not vectorise the loop
        scale = np.float32(1.0 / 16777216.0)
        one = np.float32(1.0)
        for c in range(x.shape[0]):
            a, b, d, e = left[c], right[c], up[c], down[c]
            p0 = w0 * (eh if a == 0 else one) * (eh if b == 0 else one) * (ev if d == 0 else one) * (ev if e == 0 else one)
            p1 = w1 * (eh if a == 1 else one) * (eh if b == 1 else one) * (ev if d == 1 else one) * (ev if e == 1 else one)
            p2 = w2 * (eh if a == 2 else one) * (eh if b == 2 else one) * (ev if d == 2 else one) * (ev if e == 2 else one)
            p3 = w3 * (eh if a == 3 else one) * (eh if b == 3 else one) * (ev if d == 3 else one) * (ev if e == 3 else one)
            c1 = p0 + p1
            c2 = c1 + p2
            # a 24-bit uniform (the resolution of a float32 uniform) times the total mass
            t = np.float32(_mix(_u32(key + _u32(first_chain + c))) >> _u32(8)) * scale * (c2 + p3)
            x[c] = np.uint8((t >= p0) + (t >= c1) + (t >= c2))

    @nb.njit(inline="always", boundscheck=False, cache=True)
    def _sweep_block(state, pitch, positions, weights, eh, ev, c0, c1, k, sweeps, seed):
        """``sweeps`` checkerboard sweeps of the chains [c0, c1), all of class k."""
        sites = positions.shape[0]
        for t in range(sweeps):
            sweep_key = _mix(_u32(seed + _u32(t) * _u32(0x9E3779B9)))
            for i in range(sites):
                s = positions[i]
                key = _mix(_u32(sweep_key ^ _u32(_u32(i) * _u32(0x27D4EB2F))))
                _update_run(state[s, c0:c1], state[s - 1, c0:c1], state[s + 1, c0:c1],
                            state[s - pitch, c0:c1], state[s + pitch, c0:c1], key, _u32(c0),
                            weights[k, i, 0], weights[k, i, 1], weights[k, i, 2], weights[k, i, 3], eh, ev)

    @nb.njit(boundscheck=False, cache=True)
    def _log_potential(state, pitch, height, width, field, w_h, w_v):
        """sum_i field[i, x_i] + w_h #equal horizontal pairs + w_v #equal vertical pairs per
        chain, float64, straight from the sampler's state (sentinel borders equal nothing)."""
        chains = state.shape[1]
        out = np.zeros(chains)
        for r in range(height):
            for c in range(width):
                s = (r + 1) * pitch + c + 1
                i = r * width + c
                x, right, down = state[s], state[s + 1], state[s + pitch]
                for k in range(chains):
                    out[k] += field[i, x[k]] + w_h * (x[k] == right[k]) + w_v * (x[k] == down[k])
        return out

    # Two loops over the blocks: spread over threads, and serial for a single thread or block
    # (a parallel region costs a thread-pool round trip per call, milliseconds on a loaded
    # machine, which would dominate PCD's one-sweep calls). Two functions, not one function
    # compiled twice: numba's on-disk cache is keyed by the function, so a serial and a
    # parallel compilation of one function share a cache entry, and whichever was compiled
    # first was loaded for both (the "parallel" kernel then ran on one core).
    # state (stored, chains) uint8; positions (sites,) storage index of each site in update
    # order (colour 0 first); weights (K, sites, 4) float32 exp(bias - max) in that order;
    # blocks [starts[j], stops[j]) of chains of class classes[j].
    @nb.njit(parallel=True, boundscheck=False, cache=True)
    def _sweep_parallel(state, pitch, positions, weights, eh, ev, starts, stops, classes, sweeps, seed):
        for j in nb.prange(starts.shape[0]):
            _sweep_block(state, pitch, positions, weights, eh, ev, starts[j], stops[j], classes[j], sweeps, seed)
        return state

    @nb.njit(boundscheck=False, cache=True)
    def _sweep_serial(state, pitch, positions, weights, eh, ev, starts, stops, classes, sweeps, seed):
        for j in range(starts.shape[0]):
            _sweep_block(state, pitch, positions, weights, eh, ev, starts[j], stops[j], classes[j], sweeps, seed)
        return state


def _class_blocks(labels: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks (starts, stops, classes) of at most ``block`` consecutive chains with one
    class each, for labels that are already grouped (runs of equal labels)."""
    labels = np.asarray(labels, dtype=np.int64)
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts, stops, classes = [], [], []
    for a, b in zip(np.r_[0, edges], np.r_[edges, len(labels)]):
        for s in range(int(a), int(b), block):
            starts.append(s)
            stops.append(min(s + block, int(b)))
            classes.append(int(labels[a]))
    as_array = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return as_array(starts), as_array(stops), as_array(classes)


# ----------------------------------------------------------------------------- torch path

def _neighbour_counts(height: int, width: int, he: int, we: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical equal-neighbour counts (he*we, 256, L) for every site and
    neighbourhood byte; neighbours outside the real lattice count for nothing."""
    cfg = torch.arange(CONFIGS)
    digits = torch.stack([(cfg >> (2 * k)) & 3 for k in range(4)], dim=1)  # (256, 4): left right up down
    level = torch.arange(LEVELS)
    eq = digits[:, :, None] == level[None, None, :]  # (256, 4, L)
    rows = torch.arange(he).repeat_interleave(we)
    cols = torch.arange(we).repeat(he)
    exists = torch.stack([cols > 0, cols + 1 < width, rows > 0, rows + 1 < height], dim=1)  # (S, 4)
    exists &= ((rows < height) & (cols < width))[:, None]
    counted = eq[None] & exists[:, None, :, None]  # (S, 256, 4, L)
    horizontal = counted[:, :, 0].to(torch.float32) + counted[:, :, 1].to(torch.float32)
    vertical = counted[:, :, 2].to(torch.float32) + counted[:, :, 3].to(torch.float32)
    return horizontal, vertical


@dataclass
class LatticeGeometry:
    """Index bookkeeping of the torch path: a (height, width) lattice extended to even size
    with phantom sites (which the real sites never read) and stored with a zero border,
    so both checkerboard colours are rectangular strided views."""

    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"lattice must be at least 1x1, got {self.height}x{self.width}")
        self.he = self.height + self.height % 2
        self.we = self.width + self.width % 2
        self.pitch = self.we + 2
        self.stored = (self.he + 2) * self.pitch
        self.real = torch.zeros(self.he, self.we, dtype=torch.bool)
        self.real[: self.height, : self.width] = True

    def colour_view(self, padded: torch.Tensor, colour: int, shift: int = 0) -> torch.Tensor:
        """Strided view (C, he/2, 2, we/2) of the sites of one colour (r + c even for 0),
        or of their neighbours at storage offset ``shift`` (-1 left, +1 right, -pitch up)."""
        chains = padded.shape[0]
        p = self.pitch
        start = (p + 1) if colour == 0 else (p + 2)
        diag = (p + 1) if colour == 0 else (p - 1)
        return padded.as_strided((chains, self.he // 2, 2, self.we // 2),
                                 (self.stored, 2 * p, diag, 2), padded.storage_offset() + start + shift)

    def colour_sites(self, colour: int) -> torch.Tensor:
        """Flat internal site index (r * we + c) of every position of ``colour_view``."""
        i = torch.arange(self.he // 2).view(-1, 1, 1)
        a = torch.arange(2).view(1, -1, 1)
        j = torch.arange(self.we // 2).view(1, 1, -1)
        rows = 2 * i + a
        cols = 2 * j + ((a + colour) % 2)
        return rows * self.we + cols

    def pad(self, states: torch.Tensor) -> torch.Tensor:
        """(C, H, W) levels -> (C, stored) uint8 with zero border and phantom sites."""
        chains = states.shape[0]
        padded = torch.zeros(chains, self.he + 2, self.pitch, dtype=torch.uint8, device=states.device)
        padded[:, 1: self.height + 1, 1: self.width + 1] = states.to(torch.uint8)
        return padded.view(chains, self.stored)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        stored = padded.view(padded.shape[0], self.he + 2, self.pitch)
        return stored[:, 1: self.height + 1, 1: self.width + 1]


def conditional_table(bias: torch.Tensor, w_h: float | torch.Tensor, w_v: float | torch.Tensor,
                      counts: tuple[torch.Tensor, torch.Tensor], geometry: LatticeGeometry) -> torch.Tensor:
    """Cumulative conditional probabilities (K * he*we * 256, L - 1) of the Potts model
    p(x) ~ exp(sum_i bias[y, i, x_i] + w_h #equal horizontal pairs + w_v #equal vertical pairs).

    ``bias`` is (K, H, W, L): one bias field per class (K = 1 when unconditional).
    Phantom sites get thresholds of 2, so they always draw level 0 and never matter.
    """
    k, height, width, levels = bias.shape
    if levels != LEVELS:
        raise ValueError(f"the block sampler encodes {LEVELS} levels, got {levels}")
    g = geometry
    full = torch.zeros(k, g.he, g.we, levels, dtype=torch.float32, device=bias.device)
    full[:, :height, :width] = bias.detach().to(torch.float32)
    horizontal, vertical = counts
    w_h = torch.as_tensor(w_h, dtype=torch.float32, device=bias.device).detach()
    w_v = torch.as_tensor(w_v, dtype=torch.float32, device=bias.device).detach()
    logits = full.view(k, g.he * g.we, 1, levels) + (w_h * horizontal + w_v * vertical)[None]
    cumulative = torch.softmax(logits, dim=-1).cumsum_(dim=-1)[..., : levels - 1]
    cumulative[:, ~g.real.flatten().to(bias.device)] = 2.0
    return cumulative.reshape(-1, levels - 1).contiguous()


# ----------------------------------------------------------------------------- the sampler

class CheckerboardGibbs:
    """Two-colour block Gibbs sampler for many parallel chains of a lattice Potts model.

    Usage: ``sampler.set_parameters(bias, w_h, w_v)`` whenever the parameters change,
    then ``sampler.sweep(padded, sweeps, generator)`` on a state from ``sampler.pad``.
    ``labels`` (C,) pick each chain's bias field when there are several (classes).
    ``threads``: numba worker threads (None: torch's intra-op thread count, which the
    pipeline's jobs pin to the rule's ``threads``).
    """

    def __init__(self, height: int, width: int, device: str | torch.device = "cpu", backend: str = "auto",
                 threads: int | None = None) -> None:
        if backend not in {"auto", "numba", "torch"}:
            raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        self.device = torch.device(device)
        on_cpu = self.device.type == "cpu"
        if backend == "numba" and not (on_cpu and numba_available()):
            raise RuntimeError("the numba kernel needs a CPU device and the numba package")
        self.backend = "numba" if backend in {"auto", "numba"} and on_cpu and numba_available() else "torch"
        if height < 1 or width < 1:
            raise ValueError(f"lattice must be at least 1x1, got {height}x{width}")
        self.height, self.width = height, width
        self.threads = threads
        self.classes = 1
        self._ready = False
        if self.backend == "numba":
            self.pitch = width + 2
            self.stored = (height + 2) * self.pitch
            order = [(r, c) for colour in (0, 1) for r in range(height) for c in range(width) if (r + c) % 2 == colour]
            self._positions = np.asarray([(r + 1) * self.pitch + c + 1 for r, c in order], dtype=np.int64)
            self._site_order = np.asarray([r * width + c for r, c in order], dtype=np.int64)
        else:
            self.geometry = LatticeGeometry(height, width)
            self.stored = self.geometry.stored
            self.counts = tuple(t.to(self.device) for t in _neighbour_counts(height, width, self.geometry.he,
                                                                            self.geometry.we))
            self.sites = [self.geometry.colour_sites(c).to(self.device) * CONFIGS for c in (0, 1)]

    def set_parameters(self, bias: torch.Tensor, w_h: float | torch.Tensor, w_v: float | torch.Tensor) -> None:
        """Take the current parameters (bias (K, H, W, L) or (H, W, L); couplings)."""
        if bias.dim() == 3:
            bias = bias.unsqueeze(0)
        if tuple(bias.shape[1:3]) != (self.height, self.width):
            raise ValueError(f"bias lattice {tuple(bias.shape[1:3])} does not match sampler lattice "
                             f"{(self.height, self.width)}")
        if bias.shape[-1] != LEVELS:
            raise ValueError(f"the block sampler draws {LEVELS} levels, got {bias.shape[-1]}")
        self.classes = bias.shape[0]
        if self.backend == "numba":
            b = bias.detach().to("cpu", torch.float64).numpy().reshape(self.classes, -1, LEVELS)[:, self._site_order]
            self._weights = np.ascontiguousarray(np.exp(b - b.max(-1, keepdims=True)), dtype=np.float32)
            self._eh, self._ev = np.float32(np.exp(float(w_h))), np.float32(np.exp(float(w_v)))
        else:
            self.table = conditional_table(bias.to(self.device), w_h, w_v, self.counts, self.geometry)
        self._ready = True

    def pad(self, states: torch.Tensor) -> torch.Tensor:
        """(C, H, W) levels -> the sampler's (C, stored) uint8 state. The numba kernel keeps
        chains innermost in memory (a transposed view), so one site of every chain is one
        contiguous run of bytes."""
        if states.dim() != 3 or tuple(states.shape[1:]) != (self.height, self.width):
            raise ValueError(f"expected (C, {self.height}, {self.width}) levels, got {tuple(states.shape)}")
        if self.backend == "torch":
            return self.geometry.pad(states.to(self.device))
        chains = states.shape[0]
        bordered = torch.full((self.height + 2, self.pitch, chains), SENTINEL, dtype=torch.uint8)
        bordered[1:-1, 1:-1] = states.to("cpu", torch.uint8).permute(1, 2, 0)
        return bordered.view(self.stored, chains).t()

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """The sampler state -> (C, H, W) uint8 levels (a copy)."""
        if self.backend == "torch":
            return self.geometry.unpad(padded.contiguous()).contiguous()
        bordered = padded.t().reshape(self.height + 2, self.pitch, padded.shape[0])
        return bordered[1:-1, 1:-1].permute(2, 0, 1).contiguous()

    def _check_labels(self, labels: torch.Tensor | None, chains: int) -> torch.Tensor | None:
        if labels is None:
            if self.classes != 1:
                raise ValueError(f"the model has {self.classes} bias fields; pass labels")
            return None
        labels = torch.as_tensor(labels).long()
        if labels.shape != (chains,):
            raise ValueError(f"labels must have shape ({chains},), got {tuple(labels.shape)}")
        if chains and (int(labels.min()) < 0 or int(labels.max()) >= self.classes):
            raise ValueError(f"labels must lie in [0, {self.classes})")
        return labels

    @torch.no_grad()
    def sweep(self, padded: torch.Tensor, sweeps: int = 1, generator: torch.Generator | None = None,
              labels: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``sweeps`` full sweeps (colour 0 then colour 1) in place; returns ``padded``."""
        if not self._ready:
            raise RuntimeError("call set_parameters before sweeping")
        chains = padded.shape[0]
        layout_ok = padded.t().is_contiguous() if self.backend == "numba" else padded.is_contiguous()
        if padded.shape[1:] != (self.stored,) or padded.dtype != torch.uint8 or not layout_ok:
            raise ValueError(f"expected a uint8 state of shape (C, {self.stored}) made by this sampler's pad()")
        labels = self._check_labels(labels, chains)
        if self.backend == "numba":
            return self._sweep_numba(padded, sweeps, generator, labels)
        return self._sweep_torch(padded, sweeps, generator, labels)

    def _sweep_numba(self, padded: torch.Tensor, sweeps: int, generator: torch.Generator | None,
                     labels: torch.Tensor | None) -> torch.Tensor:
        threads = max(1, min(int(self.threads or torch.get_num_threads()), nb.config.NUMBA_NUM_THREADS))
        nb.set_num_threads(threads)
        # one 32-bit seed per call from the caller's generator keeps runs reproducible
        seed = np.uint32(int(torch.randint(0, 2**32, (1,), generator=generator)))
        state = padded.t().numpy()  # (stored, C), shares memory with padded
        if labels is None:
            order = None
            blocks = _class_blocks(np.zeros(padded.shape[0], dtype=np.int64))
        else:
            order = torch.argsort(labels, stable=True)
            grouped = labels[order].numpy()
            blocks = _class_blocks(grouped)
            if torch.equal(order, torch.arange(len(order))):
                order = None  # already grouped: sweep in place
            else:
                state = np.ascontiguousarray(state[:, order.numpy()])
        kernel = _sweep_parallel if threads > 1 and len(blocks[0]) > 1 else _sweep_serial
        kernel(state, self.pitch, self._positions, self._weights, self._eh, self._ev, *blocks, int(sweeps), seed)
        if order is not None:
            padded.t()[:, order] = torch.from_numpy(state)
        return padded

    @torch.no_grad()
    def log_potential(self, padded: torch.Tensor, field: torch.Tensor | np.ndarray, w_h: float,
                      w_v: float) -> np.ndarray:
        """sum_i field[i, x_i] + w_h #equal horizontal pairs + w_v #equal vertical pairs of
        every chain of a state (float64): -E(x) for field = bias, and the annealing
        increments for field = bias - log p0, without unpadding."""
        field = np.ascontiguousarray(np.asarray(field, dtype=np.float64).reshape(self.height * self.width, LEVELS))
        if self.backend == "numba":
            return _log_potential(padded.t().numpy(), self.pitch, self.height, self.width, field, float(w_h),
                                  float(w_v))
        x = self.unpad(padded).long().cpu()
        total = torch.from_numpy(field)[torch.arange(self.height * self.width), x.reshape(len(x), -1)].sum(1)
        total += w_h * (x[:, :, 1:] == x[:, :, :-1]).sum((1, 2)) + w_v * (x[:, 1:] == x[:, :-1]).sum((1, 2))
        return total.numpy()

    def _sweep_torch(self, padded: torch.Tensor, sweeps: int, generator: torch.Generator | None,
                     labels: torch.Tensor | None) -> torch.Tensor:
        g = self.geometry
        if labels is None:
            bases = [s.unsqueeze(0) for s in self.sites]
        else:
            stride = g.he * g.we * CONFIGS
            labels = labels.to(self.device)
            bases = [s.unsqueeze(0) + (labels * stride).view(-1, 1, 1, 1) for s in self.sites]
        pitch = g.pitch
        for _ in range(sweeps):
            for colour in (0, 1):
                left = g.colour_view(padded, colour, -1)
                right = g.colour_view(padded, colour, 1)
                up = g.colour_view(padded, colour, -pitch)
                down = g.colour_view(padded, colour, pitch)
                cfg = torch.bitwise_left_shift(down, 2).add_(up)
                cfg = torch.bitwise_left_shift(cfg, 2).add_(right)
                cfg = torch.bitwise_left_shift(cfg, 2).add_(left)
                index = cfg.long().add_(bases[colour])
                thresholds = self.table[index.view(-1)].view(*index.shape, LEVELS - 1)
                u = torch.rand(index.shape + (1,), generator=generator, device=padded.device)
                g.colour_view(padded, colour).copy_((u > thresholds).sum(-1, dtype=torch.uint8))
        return padded


# ----------------------------------------------------------------------------- the reference

def site_conditional_logits(states: torch.Tensor, bias: torch.Tensor, w_h: float, w_v: float,
                            row: int, col: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (C, L) of site (row, col) given its neighbours, straight from the energy."""
    height, width, levels = bias.shape[-3:]
    site_bias = bias[..., row, col, :]
    logits = site_bias[labels] if labels is not None else site_bias.expand(states.shape[0], levels)
    logits = logits.clone()
    level = torch.arange(levels, device=states.device)
    for dr, dc, weight in ((0, -1, w_h), (0, 1, w_h), (-1, 0, w_v), (1, 0, w_v)):
        r, c = row + dr, col + dc
        if 0 <= r < height and 0 <= c < width:
            logits += weight * (states[:, r, c, None].long() == level).to(logits.dtype)
    return logits


@torch.no_grad()
def sequential_gibbs(states: torch.Tensor, bias: torch.Tensor, w_h: float, w_v: float, sweeps: int = 1,
                     generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Plain single-site Gibbs in raster order (the reference sampler), in place on (C, H, W).

    Every conditional is recomputed from the energy, independently of the block
    samplers, so the samplers check each other.
    """
    if bias.dim() == 3 and labels is not None:
        raise ValueError("labels need a (K, H, W, L) bias")
    if bias.dim() == 4 and labels is None:
        if bias.shape[0] != 1:
            raise ValueError("a (K, H, W, L) bias with K > 1 needs labels")
        bias = bias[0]
    bias = bias.detach().to(torch.float32)
    height, width = bias.shape[-3:-1]
    for _ in range(sweeps):
        for row in range(height):
            for col in range(width):
                logits = site_conditional_logits(states, bias, float(w_h), float(w_v), row, col, labels)
                cumulative = torch.softmax(logits, dim=-1).cumsum(-1)[:, :-1]
                u = torch.rand(states.shape[0], 1, generator=generator, device=states.device)
                states[:, row, col] = (u > cumulative).sum(-1).to(states.dtype)
    return states
