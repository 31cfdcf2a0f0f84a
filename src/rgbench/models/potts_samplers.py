"""Gibbs samplers for grid Potts models: a fast checkerboard block sampler and the
plain sequential single-site reference.

The block sampler exploits two facts. First, on a 4-neighbour grid the sites of one
checkerboard colour are conditionally independent given the other colour, so a whole
colour is updated at once. Second, a site's conditional distribution depends only on
its own bias and on the levels of its (at most four) neighbours: with L = 4 levels the
neighbourhood is one byte (left + 4 right + 16 up + 64 down), so the cumulative
conditional probabilities of every (site, neighbourhood) pair fit in a table of
sites x 256 x (L - 1) floats. A half-sweep is then a handful of tensor operations over
all chains: build the byte from four strided views of the padded state, gather three
thresholds, compare with one uniform per site. The table is rebuilt from the current
parameters every time they change (cheap: sites x 256 x L), which is what makes the
sampler exact for the parameters it is given.

Grids of odd height or width are extended to even size with phantom sites that the
real sites never read (their table ignores missing neighbours), so the checkerboard
views are always rectangular.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

LEVELS = 4  # the neighbourhood byte encodes four neighbours of 2 bits each
CONFIGS = LEVELS**4


def _neighbour_counts(height: int, width: int, he: int, we: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical equal-neighbour counts (he*we, 256, L) for every site and
    neighbourhood byte; neighbours outside the real grid count for nothing."""
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
class GridGeometry:
    """Index bookkeeping of a (height, width) grid stored with a one-site zero border."""

    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"grid must be at least 1x1, got {self.height}x{self.width}")
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
        grid = padded.view(padded.shape[0], self.he + 2, self.pitch)
        return grid[:, 1: self.height + 1, 1: self.width + 1]


def conditional_table(bias: torch.Tensor, w_h: float | torch.Tensor, w_v: float | torch.Tensor,
                      counts: tuple[torch.Tensor, torch.Tensor], geometry: GridGeometry) -> torch.Tensor:
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


# The CPU kernel: the same table lookup as the tensor path, fused into one loop per
# chain so a chain's 28x28 state stays in L1 for all its sweeps, with a counter-based
# splitmix64 stream per chain (24-bit uniforms, the resolution of torch.rand's float32).
_KERNEL_SOURCE = r"""
#include <math.h>
#include <stdint.h>

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Cumulative conditionals (K, S, 256, 3) from bias (K, S, 4). flags[s]: bit 0..3 say the
   left/right/up/down neighbour exists, bit 4 marks a phantom site. exp(w_h nh + w_v nv)
   takes only 9 values, so the table needs no exp per entry. */
void potts_table(const float *bias, int64_t classes, int64_t sites, const uint8_t *flags,
                 double w_h, double w_v, float *out) {
    double a[3][3];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) a[i][j] = exp(w_h * i + w_v * j);
    for (int64_t k = 0; k < classes; ++k) {
        for (int64_t s = 0; s < sites; ++s) {
            float *o = out + ((k * sites + s) * 256) * 3;
            const uint8_t f = flags[s];
            if (f & 16) {
                for (int i = 0; i < 256 * 3; ++i) o[i] = 2.0f;
                continue;
            }
            const float *b = bias + (k * sites + s) * 4;
            double m = b[0], eb[4];
            for (int l = 1; l < 4; ++l) m = b[l] > m ? b[l] : m;
            for (int l = 0; l < 4; ++l) eb[l] = exp((double)b[l] - m);
            for (int cfg = 0; cfg < 256; ++cfg) {
                const int d0 = cfg & 3, d1 = (cfg >> 2) & 3, d2 = (cfg >> 4) & 3, d3 = (cfg >> 6) & 3;
                double p[4], total = 0.0;
                for (int l = 0; l < 4; ++l) {
                    const int nh = ((f & 1) && d0 == l) + ((f & 2) && d1 == l);
                    const int nv = ((f & 4) && d2 == l) + ((f & 8) && d3 == l);
                    p[l] = eb[l] * a[nh][nv];
                    total += p[l];
                }
                const double c0 = p[0] / total, c1 = c0 + p[1] / total, c2 = c1 + p[2] / total;
                o[3 * cfg] = (float)c0;
                o[3 * cfg + 1] = (float)c1;
                o[3 * cfg + 2] = (float)c2;
            }
        }
    }
}

/* state: (stored, chains) uint8, chains innermost; table: (rows, 3) float.
   One 64-bit draw gives two 24-bit uniforms (the resolution of a float32 uniform). */
#define DRAW(c, th) do {                                                                     \
        const uint32_t cfg = left[c] | (right[c] << 2) | (up[c] << 4) | (down[c] << 6);      \
        const float *q = (th) + 3 * cfg;                                                     \
        x[c] = (uint8_t)((u > q[0]) + (u > q[1]) + (u > q[2]));                              \
    } while (0)

void potts_sweep(uint8_t *state, int64_t chains, int64_t pitch, const float *table,
                 const int32_t *pos, const int32_t *row, int64_t n, const int64_t *class_row,
                 int64_t sweeps, uint64_t seed) {
    const float scale = 1.0f / 16777216.0f;
    uint64_t counter = mix64(seed);
    for (int64_t k = 0; k < sweeps; ++k) {
        for (int64_t i = 0; i < n; ++i) {
            uint8_t *x = state + (int64_t)pos[i] * chains;
            const uint8_t *left = x - chains, *right = x + chains;
            const uint8_t *up = x - pitch * chains, *down = x + pitch * chains;
            const float *site = table + 3 * (int64_t)row[i];
            int64_t c = 0;
            for (; c + 1 < chains; c += 2) {
                counter += 0x9e3779b97f4a7c15ULL;
                const uint64_t r = mix64(counter);
                float u = (float)(r >> 40) * scale;
                DRAW(c, class_row ? site + 3 * class_row[c] : site);
                u = (float)((r >> 16) & 0xffffff) * scale;
                DRAW(c + 1, class_row ? site + 3 * class_row[c + 1] : site);
            }
            if (c < chains) {
                counter += 0x9e3779b97f4a7c15ULL;
                const float u = (float)(mix64(counter) >> 40) * scale;
                DRAW(c, class_row ? site + 3 * class_row[c] : site);
            }
        }
    }
}
"""

_KERNEL: ctypes.CDLL | None | bool = None


def _kernel() -> ctypes.CDLL | None:
    """Compile (once, cached by source hash) and load the C kernel; None without a compiler."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL or None
    if os.environ.get("RGBENCH_POTTS_KERNEL", "1") == "0":
        _KERNEL = False
        return None
    digest = hashlib.sha256(_KERNEL_SOURCE.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("RGBENCH_CACHE", Path(tempfile.gettempdir()) / f"rgbench-{os.getuid()}"))
    library = cache / f"potts_kernel_{digest}.so"
    try:
        if not library.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as work:
                source = Path(work) / "potts_kernel.c"
                source.write_text(_KERNEL_SOURCE)
                built = Path(work) / "potts_kernel.so"
                compiler = os.environ.get("CC", "cc")
                subprocess.run([compiler, "-O3", "-shared", "-fPIC", "-o", str(built), str(source), "-lm"],
                               check=True, capture_output=True, timeout=120)
                os.replace(built, library)  # atomic: concurrent jobs never load a half-written file
        lib = ctypes.CDLL(str(library))
    except (OSError, subprocess.SubprocessError):
        _KERNEL = False
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.potts_sweep.argtypes = [ptr, i64, i64, ptr, ptr, ptr, i64, ptr, i64, ctypes.c_uint64]
    lib.potts_sweep.restype = None
    lib.potts_table.argtypes = [ptr, i64, i64, ptr, ctypes.c_double, ctypes.c_double, ptr]
    lib.potts_table.restype = None
    _KERNEL = lib
    return lib


def kernel_available() -> bool:
    return _kernel() is not None


class CheckerboardGibbs:
    """Two-colour block Gibbs sampler for many parallel chains of a grid Potts model.

    Usage: ``sampler.set_parameters(bias, w_h, w_v)`` whenever the parameters change,
    then ``sampler.sweep(padded, sweeps, generator)`` on a state from ``sampler.pad``.
    ``labels`` (C,) pick each chain's bias field when there are several (classes).
    """

    def __init__(self, height: int, width: int, device: str | torch.device = "cpu", backend: str = "auto") -> None:
        if backend not in {"auto", "kernel", "torch"}:
            raise ValueError(f"backend must be 'auto', 'kernel' or 'torch', got {backend!r}")
        self.geometry = GridGeometry(height, width)
        self.device = torch.device(device)
        on_cpu = self.device.type == "cpu"
        if backend == "kernel" and not (on_cpu and kernel_available()):
            raise RuntimeError("the C kernel needs a CPU device and a working C compiler (cc)")
        # tensor path on GPUs (and without a compiler); the fused kernel on CPUs
        self.backend = "kernel" if backend in {"auto", "kernel"} and on_cpu and kernel_available() else "torch"
        g = self.geometry
        pos, row = [], []
        for colour in (0, 1):
            for r in range(height):
                for c in range(width):
                    if (r + c) % 2 == colour:
                        pos.append((r + 1) * g.pitch + c + 1)
                        row.append((r * g.we + c) * CONFIGS)
        self._pos = torch.tensor(pos, dtype=torch.int32)
        self._row = torch.tensor(row, dtype=torch.int32)
        rows = torch.arange(g.he).repeat_interleave(g.we)
        cols = torch.arange(g.we).repeat(g.he)
        flags = ((cols > 0).int() | ((cols + 1 < width).int() << 1) | ((rows > 0).int() << 2)
                 | ((rows + 1 < height).int() << 3) | ((~g.real.flatten()).int() << 4))
        self._flags = flags.to(torch.uint8).contiguous()
        self._n0 = sum(1 for r in range(height) for c in range(width) if (r + c) % 2 == 0)
        self.counts = tuple(t.to(self.device) for t in _neighbour_counts(height, width, self.geometry.he,
                                                                        self.geometry.we))
        self.sites = [self.geometry.colour_sites(c).to(self.device) * CONFIGS for c in (0, 1)]
        self.table: torch.Tensor | None = None
        self.classes = 1
        self._base: dict[tuple[int, int], list[torch.Tensor]] = {}

    def set_parameters(self, bias: torch.Tensor, w_h: float | torch.Tensor, w_v: float | torch.Tensor) -> None:
        """Rebuild the conditional table from the current parameters (bias (K, H, W, L) or (H, W, L))."""
        if bias.dim() == 3:
            bias = bias.unsqueeze(0)
        g = self.geometry
        if tuple(bias.shape[1:3]) != (g.height, g.width):
            raise ValueError(f"bias grid {tuple(bias.shape[1:3])} does not match sampler grid {(g.height, g.width)}")
        self.classes = bias.shape[0]
        if self.backend == "kernel":
            full = torch.zeros(self.classes, g.he, g.we, LEVELS, dtype=torch.float32)
            full[:, : g.height, : g.width] = bias.detach().to("cpu", torch.float32)
            table = torch.empty(self.classes * g.he * g.we * CONFIGS, LEVELS - 1, dtype=torch.float32)
            _kernel().potts_table(full.data_ptr(), self.classes, g.he * g.we, self._flags.data_ptr(),
                                  float(w_h), float(w_v), table.data_ptr())
            self.table = table
        else:
            self.table = conditional_table(bias.to(self.device), w_h, w_v, self.counts, g)

    def pad(self, states: torch.Tensor) -> torch.Tensor:
        """(C, H, W) levels -> the sampler's (C, stored) uint8 state. The kernel keeps
        chains innermost in memory (a transposed view), so one site of every chain is
        one contiguous run of bytes."""
        padded = self.geometry.pad(states.to(self.device))
        if self.backend == "kernel":
            return padded.t().contiguous().t()
        return padded

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """The sampler state -> (C, H, W) uint8 levels (a copy)."""
        return self.geometry.unpad(padded.contiguous()).contiguous()

    def _bases(self, labels: torch.Tensor | None, chains: int) -> list[torch.Tensor]:
        """Per-colour table row offsets (site and class) for every chain."""
        if labels is None:
            if self.classes != 1:
                raise ValueError(f"the model has {self.classes} bias fields; pass labels")
            return [s.unsqueeze(0) for s in self.sites]
        labels = labels.to(self.device).long()
        if labels.shape != (chains,):
            raise ValueError(f"labels must have shape ({chains},), got {tuple(labels.shape)}")
        if int(labels.min()) < 0 or int(labels.max()) >= self.classes:
            raise ValueError(f"labels must lie in [0, {self.classes})")
        stride = self.geometry.he * self.geometry.we * CONFIGS
        return [s.unsqueeze(0) + (labels * stride).view(-1, 1, 1, 1) for s in self.sites]

    @torch.no_grad()
    def sweep(self, padded: torch.Tensor, sweeps: int = 1, generator: torch.Generator | None = None,
              labels: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``sweeps`` full sweeps (colour 0 then colour 1) in place; returns ``padded``."""
        if self.table is None:
            raise RuntimeError("call set_parameters before sweeping")
        g = self.geometry
        chains = padded.shape[0]
        layout_ok = padded.t().is_contiguous() if self.backend == "kernel" else padded.is_contiguous()
        if padded.shape[1:] != (g.stored,) or padded.dtype != torch.uint8 or not layout_ok:
            raise ValueError(f"expected a uint8 state of shape (C, {g.stored}) made by this sampler's pad()")
        if self.backend == "kernel":
            return self._sweep_kernel(padded, sweeps, generator, labels)
        bases = self._bases(labels, chains)
        pitch = g.pitch
        table = self.table
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
                thresholds = table[index.view(-1)].view(*index.shape, LEVELS - 1)
                u = torch.rand(index.shape + (1,), generator=generator, device=padded.device)
                g.colour_view(padded, colour).copy_((u > thresholds).sum(-1, dtype=torch.uint8))
        return padded

    def _sweep_kernel(self, padded: torch.Tensor, sweeps: int, generator: torch.Generator | None,
                      labels: torch.Tensor | None) -> torch.Tensor:
        chains = padded.shape[0]
        class_row = None
        if labels is not None or self.classes != 1:
            if labels is None:
                raise ValueError(f"the model has {self.classes} bias fields; pass labels")
            labels = labels.long().cpu()
            if labels.shape != (chains,) or int(labels.min()) < 0 or int(labels.max()) >= self.classes:
                raise ValueError(f"labels must have shape ({chains},) with values in [0, {self.classes})")
            class_row = (labels * (self.geometry.he * self.geometry.we * CONFIGS)).contiguous()
        # one 62-bit seed per call from the caller's generator keeps runs reproducible
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        g = self.geometry
        _kernel().potts_sweep(padded.data_ptr(), chains, g.pitch, self.table.data_ptr(), self._pos.data_ptr(),
                              self._row.data_ptr(), len(self._pos),
                              None if class_row is None else class_row.data_ptr(), int(sweeps), seed)
        return padded


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
    sampler's table, so the two samplers check each other.
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
