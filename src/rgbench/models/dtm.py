"""A denoising chain of conditional Boltzmann machines of 4-level MNIST, after Extropic's
denoising thermodynamic models (DTM: Jelinčič et al. 2025, arXiv 2510.23972; recipe as in
the replication pschilliOrange/dtm-replication, commit 7c22d19).

Forward process. Image x_0 is noised in T steps; in step i every pixel keeps its level with
probability k_i and is otherwise redrawn uniformly from the 4 levels. On the replication's
log time grid t_i = -ln(1 - i/T) with noise rate lambda (``rate``), a pixel of x_i still
holds its x_0 level with probability

    a_i = exp(-lambda t_i) = (1 - i/T) ** lambda,    k_i = a_i / a_{i-1},

so a_T = 0: x_T is exactly uniform noise, the start of generation.

Reverse model. Step i has its own categorical RBM (:class:`rgbench.models.rbm.CategoricalRBM`,
784 4-level visible units x_{i-1}, H binary hidden units, optionally the 10 label units),
and p(x_{i-1} | x_i) is that RBM times the forward kernel, whose energy is a fixed per-pixel
coupling to the clamped x_i:

    -E(x_{i-1}, h; x_i) = -E_RBM(x_{i-1}, h) + J_i sum_s [x_{i-1,s} = x_{i,s}],
    J_i = log(1 + L k_i / (1 - k_i))      (L = 4 levels; J_T = 0),

i.e. log q(x_i | x_{i-1}) up to a constant. J_i is not trained. Given x_i, the graph is
still bipartite (the coupling only shifts each pixel's level potentials), so one sweep is two
blocks: all hidden units given the pixels, then all pixels given the hidden units and x_i.

Training: each step independently, by the conditional likelihood of (x_{i-1} | x_i) pairs
drawn by the forward process from training images. The negative phase runs ``sweeps``
block-Gibbs sweeps with x_i (and the label) clamped, starting from x_i itself; the gradient
is data minus chain statistics, the PCD statistics of potts_ebm's RBMs. Adam, learning rate
decayed by a cosine to ``lr_final_factor`` of its start (the replication's optimiser).

Generation: x_T uniform noise; for i = T..1, ``sweeps`` sweeps of step i's chain from x_i,
whose last visible sample is x_{i-1} (temperature 1). Training and generation run the same
number of sweeps from the same start, so each step learns what its own short chain can reach.

Departures from the replication's recipe (named, for the reader comparing the two):

- 4-level categorical pixels with a uniform-resampling kernel, where the replication noises
  binary (or thermometer-coded) pixels by independent bit flips;
- a dense bipartite RBM per step, where it uses a sparse, locally connected bipartite torus
  grid of latents (degree 8-20, ~3,000-4,000 latents);
- short chains from x_i (``sweeps``, tens), where it starts every chain fresh from the
  biases and runs 400 warm-up sweeps plus 49 x 8 more (training) and 600-800 sweeps with
  beta annealed 0.8 -> 1.2 (generation); ours stay at beta = 1;
- no adaptive correlation penalty, no widened training interval (its offset 0.1-0.15);
- labels, when present, are clamped units of every step's RBM, where it noises label spots
  like pixels;
- sizes, steps and epochs chosen for a small CPU budget (docs/decisions/dtm.md).
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
from rgbench.models.rbm import CategoricalRBM, RBMConfig, sample_above_reference
from rgbench.training import load_trained_module, save_model_file

SIDE = 28
# Bumped when what a saved DTM holds changes.
SAVE_FORMAT = 1


@dataclass
class DTMConfig:
    steps: int  # T denoising steps (one RBM each)
    rate: float  # noise rate lambda of the log time grid: a_i = (1 - i/T) ** rate
    hidden: int  # hidden units of every step's RBM
    sweeps: int  # block-Gibbs sweeps per step, in training's negative phase and in generation
    epochs: int  # passes over the training images, per step
    batch_size: int
    lr: float  # Adam's learning rate at the start
    lr_final_factor: float  # the cosine decay ends at this multiple of lr
    weight_decay: float  # L2 on the weights (not the biases)
    init_std: float  # weights start as N(0, init_std^2)
    classes: int  # 0: unconditional; 10: every step's RBM has the (clamped) label units
    smoothing: float  # add-alpha counts of the pixel marginals the visible biases start from

    def __post_init__(self) -> None:
        if self.steps < 1 or self.hidden < 1 or self.sweeps < 1 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"steps, hidden, sweeps, batch_size must be >= 1 and epochs >= 0: {self}")
        if self.rate <= 0 or self.lr <= 0 or not 0 < self.lr_final_factor <= 1:
            raise ValueError(f"rate and lr must be > 0 and lr_final_factor in (0, 1]: {self}")
        if self.classes not in (0, CLASSES):
            raise ValueError(f"classes must be 0 or {CLASSES}, got {self.classes}")


def keep_probabilities(steps: int, rate: float) -> np.ndarray:
    """a_i, i = 0..T: the probability that a pixel of x_i still holds its x_0 level."""
    return (1.0 - np.arange(steps + 1) / steps) ** rate


def step_keep_probabilities(steps: int, rate: float) -> np.ndarray:
    """k_i = a_i / a_{i-1}, i = 1..T: a pixel's chance of surviving step i (k_T = 0)."""
    a = keep_probabilities(steps, rate)
    return a[1:] / a[:-1]


def couplings(steps: int, rate: float, levels: int = LEVELS) -> np.ndarray:
    """J_i, i = 1..T: log q(same level) / q(another given level) of step i's kernel."""
    k = step_keep_probabilities(steps, rate)
    return np.log1p(levels * k / (1.0 - k))


def resample(x: torch.Tensor, keep: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each pixel kept with probability ``keep``, else redrawn uniformly over the levels."""
    noise = torch.randint(0, LEVELS, x.shape, generator=generator, dtype=x.dtype)
    if keep <= 0:
        return noise
    redraw = torch.rand(x.shape, generator=generator) >= keep
    return torch.where(redraw, noise, x)


class DTM(nn.Module):
    """T conditional categorical RBMs; ``rbms[i - 1]`` models x_{i-1} given x_i."""

    def __init__(self, config: DTMConfig) -> None:
        super().__init__()
        self.config = config
        self.rbms = nn.ModuleList(
            CategoricalRBM(RBMConfig(height=SIDE, width=SIDE, levels=LEVELS, hidden=config.hidden,
                                     classes=config.classes, init_std=config.init_std))
            for _ in range(config.steps))
        self.register_buffer("coupling", torch.tensor(couplings(config.steps, config.rate), dtype=torch.float32))
        self.record: dict[str, Any] = {}

    @property
    def conditional(self) -> bool:
        return self.config.classes > 0

    def parameter_count(self) -> int:
        return int(sum(rbm.parameter_count() for rbm in self.rbms))

    def check_labels(self, labels: torch.Tensor | None, n: int) -> None:
        if self.conditional and (labels is None or labels.shape != (n,)):
            raise ValueError(f"a label-conditional DTM needs {n} labels, got "
                             f"{None if labels is None else tuple(labels.shape)}")
        if not self.conditional and labels is not None:
            raise ValueError("an unconditional DTM takes no labels")
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= CLASSES):
            raise ValueError(f"labels must lie in [0, {CLASSES})")

    def coupling_logits(self, step: int, x_cond: torch.Tensor) -> torch.Tensor:
        """J_step [level = x_cond's level] in the RBM's reference form (level 0's potential
        is 0, so a pixel conditioned on level 0 lowers the others by J), (N, S, L - 1)."""
        flat = x_cond.reshape(len(x_cond), -1).long()
        above = F.one_hot(flat, LEVELS)[..., 1:].float() - (flat == 0).float()[..., None]
        return self.coupling[step - 1] * above

    @torch.no_grad()
    def denoise(self, step: int, x_cond: torch.Tensor, labels: torch.Tensor | None, sweeps: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``sweeps`` block-Gibbs sweeps of step ``step``'s chain with x_step = ``x_cond``
        (and the labels) clamped, from ``x_cond``: the last sample of x_{step-1}."""
        if not 1 <= step <= self.config.steps:
            raise ValueError(f"step must lie in [1, {self.config.steps}], got {step}")
        rbm, shape = self.rbms[step - 1], x_cond.shape
        field = self.coupling_logits(step, x_cond)
        x = x_cond
        for _ in range(sweeps):
            h = rbm.sample_hidden(x, labels, generator)
            x = sample_above_reference(rbm.partial_logits(h) + field, generator).view(shape)
        return x

    @torch.no_grad()
    def sample(self, n: int, labels: np.ndarray | torch.Tensor | Sequence[int] | None, sweeps: int,
               generator: torch.Generator | None = None) -> dict[int, np.ndarray]:
        """``n`` chains from uniform noise through every step, ``sweeps`` sweeps each.
        Returns cumulative sweeps -> (n, 28, 28) uint8 levels after each step; the last key
        (T x sweeps) holds the samples x_0."""
        if n < 1 or sweeps < 1:
            raise ValueError(f"n and sweeps must be >= 1, got {n}, {sweeps}")
        y = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.check_labels(y, n)
        x = torch.randint(0, LEVELS, (n, SIDE, SIDE), generator=generator, dtype=torch.uint8)
        out = {}
        for done, step in enumerate(range(self.config.steps, 0, -1), start=1):
            x = self.denoise(step, x, y, sweeps, generator)
            out[done * sweeps] = x.numpy().copy()
        return out

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
        """torch.save of a plain dict (config, weights, training record, ``extra``), atomically."""
        return save_model_file(path, "dtm", SAVE_FORMAT, self, self.config, self.record, **extra)

    @classmethod
    def load_payload(cls, path: str | os.PathLike) -> tuple["DTM", dict[str, Any]]:
        """The DTM in eval mode and the whole dict it was saved in."""
        return load_trained_module(path, "dtm", SAVE_FORMAT, lambda config: cls(DTMConfig(**config)))


# ----------------------------------------------------------------------------- training

def noised_marginal(train_x: np.ndarray, keep: float, smoothing: float) -> np.ndarray:
    """log p(x_s = l) of x at keep probability ``keep``: a * p_data + (1 - a) / L, (S, L)."""
    flat = np.asarray(train_x).reshape(len(train_x), -1)
    counts = np.stack([(flat == level).sum(0) for level in range(LEVELS)], axis=-1).astype(np.float64)
    p = (counts + smoothing) / (len(flat) + LEVELS * smoothing)
    return np.log(keep * p + (1.0 - keep) / LEVELS)


def _check_data(data: LevelData, conditional: bool) -> None:
    x, y = np.asarray(data.train_x), np.asarray(data.train_y)
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"expected (N, {SIDE}, {SIDE}) training levels, got shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= LEVELS):
        raise ValueError(f"training levels must lie in [0, {LEVELS})")
    if conditional and (y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() >= CLASSES))):
        raise ValueError(f"expected {len(x)} training labels in [0, {CLASSES})")


def _train_step(model: DTM, step: int, cfg: DTMConfig, train_x: torch.Tensor, train_y: torch.Tensor,
                generator: torch.Generator, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One step's RBM by its conditional likelihood; per-epoch CPU-s and mean free-energy gap
    F(data | x_i) - F(chains | x_i) of the conditional model (0 when its statistics match)."""
    rbm = model.rbms[step - 1]
    a = keep_probabilities(cfg.steps, cfg.rate)
    k = float(step_keep_probabilities(cfg.steps, cfg.rate)[step - 1])
    rbm.set_visible_bias_from(noised_marginal(train_x.numpy(), float(a[step - 1]), cfg.smoothing))
    optimizer = torch.optim.Adam([
        {"params": [rbm.weight, rbm.label_weight], "weight_decay": cfg.weight_decay},
        {"params": [rbm.visible_bias, rbm.hidden_bias, rbm.label_bias], "weight_decay": 0.0}], lr=cfg.lr)
    updates = len(train_x) // cfg.batch_size
    total = max(1, updates * cfg.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: cfg.lr_final_factor + (1 - cfg.lr_final_factor)
                                                 * 0.5 * (1 + math.cos(math.pi * min(u, total) / total)))
    buffer = torch.empty_like(rbm.weight)
    coupling = float(model.coupling[step - 1])
    history = []
    for epoch in range(cfg.epochs):
        began = time.process_time()
        perm = torch.randperm(len(train_x), generator=generator)
        gaps = []
        for u in range(updates):
            idx = perm[u * cfg.batch_size:(u + 1) * cfg.batch_size]
            y = train_y[idx] if model.conditional else None
            x_prev = resample(train_x[idx], float(a[step - 1]), generator)
            x_cur = resample(x_prev, k, generator)
            negatives = model.denoise(step, x_cur, y, cfg.sweeps, generator)
            grads, gap = rbm.pcd_gradient(x_prev, y, negatives, y, weight_out=buffer)
            # the conditional model's gap: the RBM's plus the fixed coupling's energy term
            gap -= coupling * float((x_prev == x_cur).float().sum((1, 2)).mean()
                                    - (negatives == x_cur).float().sum((1, 2)).mean())
            for name, p in rbm.named_parameters():
                p.grad = -grads[name]  # Adam descends: minus the ascent direction
            optimizer.step()
            schedule.step()
            gaps.append(gap)
        history.append({"step": step, "epoch": epoch, "cpu_seconds": time.process_time() - began,
                        "gap": float(np.mean(gaps))})
        log(f"step {step} epoch {epoch}: free-energy gap {history[-1]['gap']:.2f}, "
            f"{history[-1]['cpu_seconds']:.1f} CPU-s")
    return history


def train_dtm(cfg: DTMConfig, data: LevelData, seed: int, log: Callable[[str], None] | None = None,
              checkpoint_path: str | os.PathLike | None = None) -> DTM:
    """Every step's RBM in turn (T first), on ``data.train_x`` (and ``train_y`` when
    conditional). Deterministic for a fixed seed and thread count. With ``checkpoint_path``
    the chain is saved after each step and a rerun of the same config, seed and data resumes
    after the last finished step with the same result; the file is removed at the end."""
    _check_data(data, cfg.classes > 0)
    if len(data.train_x) < cfg.batch_size:
        raise ValueError(f"{len(data.train_x)} training images make no batch of {cfg.batch_size}")
    log = log or (lambda message: None)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the initial weights
    model = DTM(cfg)
    train_x = torch.from_numpy(np.ascontiguousarray(data.train_x))
    train_y = torch.from_numpy(np.asarray(data.train_y, dtype=np.int64))
    identity = {"config": asdict(cfg), "seed": seed, "n_train": len(train_x)}
    done, history, spent = [], [], 0.0
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if saved["identity"] == identity:
            model.load_state_dict(saved["state_dict"])
            generator.set_state(saved["generator"])
            done, history, spent = saved["steps_done"], saved["history"], saved["cpu_seconds"]
            log(f"resumed after steps {done} from {checkpoint_path}")
    began = time.process_time() - spent
    for step in range(cfg.steps, 0, -1):  # the hardest step (from pure noise) first
        if step in done:
            continue
        history += _train_step(model, step, cfg, train_x, train_y, generator, log)
        done.append(step)
        if checkpoint_path is not None:
            state = {"identity": identity, "steps_done": done, "state_dict": model.state_dict(),
                     "generator": generator.get_state(), "history": history,
                     "cpu_seconds": time.process_time() - began}
            with atomic_path(checkpoint_path) as tmp:
                torch.save(state, tmp)
    model.eval()
    model.record = {"seed": seed, "train_cpu_seconds": time.process_time() - began, "n_train": len(train_x),
                    "history": history}
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    return model
