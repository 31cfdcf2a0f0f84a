"""Energy-based models of 4-level MNIST sampled by block Gibbs (seed 003): train, evaluate, THRML.

Models: ``independent`` (pixels, fitted by counting: the baseline), the seed's grid Potts
models ``potts`` and ``potts_cond`` (one bias field per digit), and categorical RBMs
``rbm`` and ``rbm_cond`` (label units joined to the hidden layer).

Jobs:

1. ``train_job`` (model, seed): grid models by PCD with Adam; RBMs by PCD-k with SGD,
   momentum 0.5 then 0.9, a learning rate decayed linearly to 0 and weight decay on the
   weights (Hinton's practical guide; Tieleman 2008). Both go through
   :func:`rgbench.training.fit` (per-epoch checkpoints, exact resume); the persistent
   chains are module buffers, so they resume too. A seeded validation split of the
   training data (the data layer's ``val_index``) is never trained on; validation
   pseudo-log-likelihood and free energies are logged per epoch.
2. ``evaluate_job`` (model, seed): likelihoods (exact for the independent models; AIS with
   a doubling check, plus reverse annealing (RAISE) for the RBMs), samples from uniform
   noise by our block sampler with snapshots at the configured sweeps, and the reference
   classifier's scores of the samples and of real test images through the same 4-level
   rendering (the ceiling); writes the run's metrics.json (``sampler: block``).
3. ``thrml_job`` (model): the same sampling protocol run by THRML for the configured
   seeds, scored by the same functions; writes one metrics.json per run (``sampler: thrml``).

Likelihood verdicts use a baseline of the same kind: the independent-pixel model for
unconditional models, the class mixture of per-class independent models for the
class-conditional ones. ``conservative_gain_nats`` is a gain that cannot flatter (RAISE for
the RBMs; AIS only where its doubling check holds for the grid models) and
``conservative_margin_nats`` that gain minus two standard errors.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from rgbench.config import build
from rgbench.data.mnist import train_mask
from rgbench.io import atomic_path, file_sha256, load_npz, save_npz_atomic
from rgbench.models.potts import (IndependentModel, PottsConfig, PottsModel, ais_potts,
                                  integrated_autocorrelation_time, raise_potts)
from rgbench.models.potts_samplers import CheckerboardGibbs
from rgbench.models.rbm import CategoricalRBM, RBMConfig, ais_rbm, power_schedule, raise_log_prob
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, progress, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit

log = get_logger("potts_ebm")

EXPERIMENT = "potts_ebm"
MODELS = ("independent", "potts", "potts_cond", "rbm", "rbm_cond")
GRID_MODELS = ("potts", "potts_cond")
RBM_MODELS = ("rbm", "rbm_cond")
CONDITIONAL = ("potts_cond", "rbm_cond")
# Where sampling chains start. Unconditional models always from uniform noise; conditional
# ones either from uniform noise too or from the class-conditional independent-pixel model's
# samples of their clamped digit (noise with the digit's pixel marginals, no shape).
STARTS = ("uniform", "class_independent")
CLASSES = 10
SIDE = 28
EPOCH_GRID = 16  # chains shown per epoch in the training figure
RECOGNISED = 0.9  # the reference classifier's confidence that makes a sample a digit (quality.py)


# ----------------------------------------------------------------------------- configs

@dataclass
class GridTrainConfig:
    """PCD of the grid models (config ``pcd``)."""

    epochs: int
    batch_size: int
    lr: float
    chains: int
    sweeps: int  # k: Gibbs sweeps per parameter update
    persistent: bool  # False: CD-k, chains restart from the data batch

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "chains", "sweeps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class RBMTrainConfig:
    """PCD of the RBMs (config ``rbm``)."""

    hidden: int
    epochs: int
    batch_size: int
    lr: float  # initial learning rate, decayed linearly to 0 over training
    label_lr_factor: float  # learning-rate multiplier of the label weights and biases
    discriminative_weight: float  # rbm_cond: weight of log p(y | v) beside log p(v, y) (hybrid objective)
    momentum_start: float
    momentum_final: float
    momentum_switch_epochs: int  # epochs at momentum_start
    weight_decay: float  # L2 on the weights (visible-hidden and label-hidden)
    chains: int  # persistent chains, started at random training images
    sweeps: int
    fast_lr: dict[str, float]  # FPCD, per model (rbm, rbm_cond): lr of the chains' fast weights (0: plain PCD)
    fast_decay: float  # FPCD: the fast weights shrink by this fraction every update
    init_std: float
    val_images: int  # validation images for the per-epoch pseudo-log-likelihood

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "chains", "sweeps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.label_lr_factor <= 0 or self.weight_decay < 0 or self.discriminative_weight < 0:
            raise ValueError("lr and label_lr_factor must be > 0, weight_decay and discriminative_weight >= 0")
        if set(self.fast_lr) != set(RBM_MODELS) or min(self.fast_lr.values()) < 0 or not 0 <= self.fast_decay <= 1:
            raise ValueError(f"fast_lr needs a value >= 0 for each of {RBM_MODELS} and fast_decay one in [0, 1], "
                             f"got {self.fast_lr}, {self.fast_decay}")


@dataclass
class PottsRunConfig:
    """One run's training hand-off: the model, its seed, data limits and its training
    block (``pcd`` for the grid models, ``rbm`` for the RBMs; empty for independent)."""

    model: str
    seed: int
    train_limit: int  # 0: the whole train split
    test_limit: int  # 0: the whole test set
    smoothing: float  # add-alpha counts of the independent models
    training: dict[str, Any]

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")

    def grid(self) -> GridTrainConfig:
        return build(GridTrainConfig, self.training)

    def rbm(self) -> RBMTrainConfig:
        return build(RBMTrainConfig, self.training)


@dataclass
class AnalysisConfig:
    """The evaluate job's settings (config ``analysis``)."""

    seed: int
    ais_chains: int  # RBMs: AIS chains (the doubling check runs half the chains and steps)
    ais_steps: int
    ais_power: float  # beta_k = (k / steps) ** power
    raise_images: int  # RBMs: test images given a reverse-annealing (RAISE) bound
    raise_steps: int
    grid_ais_chains: int  # grid models: AIS chains per log Z (doubled for the check)
    grid_ais_steps: int
    samples: int  # chains scored by the reference classifier
    conditional_start: str  # conditional models' chains: "uniform" noise or "class_independent" samples
    comparison_start_chains: int  # conditional models: chains also run from the other start
    sample_sweeps: int  # RBMs
    grid_sample_sweeps: int  # grid models (they mix in a few sweeps; THRML runs them slowly)
    checkpoints: list[int]  # sweeps at which the chains are scored (steps to a digit)
    ceiling_images: int  # real test images rendered through the 4 levels
    pll_images: int
    iat_chains: int
    iat_sweeps: int

    def __post_init__(self) -> None:
        check_checkpoints(self.checkpoints)
        check_start(self.conditional_start)

    def sweeps(self, kind: str) -> int:
        return self.grid_sample_sweeps if kind in GRID_MODELS else self.sample_sweeps


def check_start(start: str) -> None:
    if start not in STARTS:
        raise ValueError(f"conditional_start must be one of {STARTS}, got {start!r}")


def check_checkpoints(checkpoints: Sequence[int]) -> None:
    if not checkpoints or sorted(set(checkpoints)) != list(checkpoints) or checkpoints[0] < 1:
        raise ValueError(f"checkpoints must be an increasing list of sweeps >= 1, got {checkpoints}")


def checkpoints_for(checkpoints: Sequence[int], sweeps: int) -> list[int]:
    """The configured checkpoints below ``sweeps``, and ``sweeps`` itself."""
    return [c for c in checkpoints if c < sweeps] + [sweeps]


@dataclass
class ThrmlConfig:
    """The THRML job's settings (config ``thrml`` plus the shared sampling protocol)."""

    seeds: list[int]
    models: list[str]
    samples: int
    conditional_start: str
    sample_sweeps: int
    grid_sample_sweeps: int
    checkpoints: list[int]
    ceiling_images: int

    def __post_init__(self) -> None:
        check_checkpoints(self.checkpoints)
        check_start(self.conditional_start)

    def sweeps(self, kind: str) -> int:
        return self.grid_sample_sweeps if kind in GRID_MODELS else self.sample_sweeps


def table_params(cfg: PottsRunConfig, sampler: str) -> dict[str, Any]:
    """The parameters a table row shows next to its metrics."""
    row: dict[str, Any] = {"model": cfg.model, "sampler": sampler, "train_limit": cfg.train_limit}
    if cfg.model in GRID_MODELS:
        grid = cfg.grid()
        row.update(epochs=grid.epochs, pcd_chains=grid.chains, pcd_sweeps=grid.sweeps, lr=grid.lr)
    elif cfg.model in RBM_MODELS:
        rbm = cfg.rbm()
        row.update(epochs=rbm.epochs, pcd_chains=rbm.chains, pcd_sweeps=rbm.sweeps, lr=rbm.lr, hidden=rbm.hidden)
    return row


# ----------------------------------------------------------------------------- data

@dataclass
class LevelData:
    train_x: np.ndarray  # (N, 28, 28) uint8 levels
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_levels(mnist4: str | os.PathLike, train_limit: int = 0, test_limit: int = 0) -> LevelData:
    """Train (without the validation rows), validation and test splits of the 4-level cache."""
    data = load_npz(mnist4)
    keep = np.flatnonzero(train_mask(len(data["train_labels"]), data["val_index"]))
    if train_limit:
        keep = keep[:train_limit]
    stop = test_limit or len(data["test_labels"])
    val = np.asarray(data["val_index"])
    return LevelData(data["train_levels"][keep], data["train_labels"][keep].astype(np.int64),
                     data["train_levels"][val], data["train_labels"][val].astype(np.int64),
                     data["test_levels"][:stop], data["test_labels"][:stop].astype(np.int64))


def to_grey(levels: np.ndarray) -> np.ndarray:
    """4-level images -> float32 grey level / 3 in [0, 1] (what the classifier sees).

    Not the bin centres: those put every background pixel at 0.125 grey, which the
    reference classifier (trained on MNIST, whose background is exactly 0, with outlier
    exposure) reads as noise. Measured on validation of this choice: real test images
    rendered at bin centres are recognised (> 0.9) 11% of the time (FID 429), at level / 3
    98% (FID 9), at the training set's mean grey of each bin 98% (FID 7)."""
    return (np.asarray(levels, dtype=np.float32) / 3.0).astype(np.float32)


def fit_independent(data: LevelData, smoothing: float) -> tuple[IndependentModel, IndependentModel]:
    """The independent-pixel model and the per-class ones (the class mixture's parts)."""
    return (IndependentModel.fit(data.train_x, alpha=smoothing),
            IndependentModel.fit(data.train_x, data.train_y, classes=CLASSES, alpha=smoothing))


def class_prior(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels, minlength=CLASSES) / len(labels)


def mixture_log_prob(per_class: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """log sum_y p(y) p(x | y) from (N, K) log p(x | y)."""
    joint = per_class + np.log(prior)[None]
    top = joint.max(1, keepdims=True)
    return (top + np.log(np.exp(joint - top).sum(1, keepdims=True)))[:, 0]


def baseline_log_prob(model: str, x: np.ndarray, independent: IndependentModel,
                      class_independent: IndependentModel, prior: np.ndarray) -> np.ndarray:
    """The matching baseline's exact log p(x): class mixture for conditional models."""
    if model in CONDITIONAL:
        per_class = np.stack([class_independent.log_likelihood(x, np.full(len(x), k)) for k in range(CLASSES)], 1)
        return mixture_log_prob(per_class, prior)
    return independent.log_likelihood(x)


# ----------------------------------------------------------------------------- training

class GridPCDTrainer(nn.Module):
    """A grid model plus its persistent chains; ``loss`` is the PCD surrogate whose
    gradient is E_data[dE/dtheta] - E_model[dE/dtheta]."""

    def __init__(self, model: PottsModel, chains: torch.Tensor, chain_labels: torch.Tensor | None,
                 sweeps: int, persistent: bool) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("chains", chains.to(torch.uint8))
        self.register_buffer("chain_labels", chain_labels if chain_labels is not None else torch.zeros(0))
        self.sweeps = sweeps
        self.persistent = persistent
        self.step_energies: list[float] = []  # mean data energy - mean chain energy, per update
        cfg = model.config
        self.sampler = CheckerboardGibbs(cfg.height, cfg.width)

    @torch.no_grad()
    def negatives(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """k sweeps from the persistent chains (PCD) or from the data batch (CD), run with
        the parameters as they are now; the chains are updated in place."""
        if self.persistent:
            start, labels = self.chains, (self.chain_labels.long() if self.model.conditional else None)
        else:
            start, labels = x.to(torch.uint8), (y if self.model.conditional else None)
        self.sampler.set_parameters(*self.model.sampler_parameters())
        padded = self.sampler.pad(start)
        self.sampler.sweep(padded, self.sweeps, labels=labels)
        negative = self.sampler.unpad(padded)
        if self.persistent:
            self.chains.copy_(negative)
        return negative, labels

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        labels = y if self.model.conditional else None
        negative, negative_labels = self.negatives(x, y)
        gap = self.model.mean_energy_difference(x, labels, negative, negative_labels)
        self.step_energies.append(float(gap.detach()))
        return gap


class MomentumSchedule:
    """Per-update learning rate (linear from lr to 0 over all updates) and momentum
    (``start`` for the first epochs, then ``final``), as a scheduler ``fit`` can step
    and checkpoint."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, switch_step: int, start: float,
                 final: float) -> None:
        self.optimizer = optimizer
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.total, self.switch, self.start, self.final = total_steps, switch_step, start, final
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        fraction = min(self.step_count / max(self.total, 1), 1.0)
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * (1.0 - fraction)
            group["momentum"] = self.start if self.step_count < self.switch else self.final

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "base": self.base}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step_count, self.base = int(state["step_count"]), list(state["base"])
        self._apply()


class RBMPCDTrainer(nn.Module):
    """An RBM plus its persistent chains (and their labels). ``loss`` runs the chains k
    sweeps with the current parameters, computes the PCD statistics by hand (sparse) and
    returns the free-energy gap with a linear term whose gradient is exactly minus the
    PCD ascent direction, so ``fit``'s backward / optimiser step applies it."""

    def __init__(self, model: CategoricalRBM, chains: torch.Tensor, chain_labels: torch.Tensor, sweeps: int,
                 generator: torch.Generator, discriminative_weight: float = 0.0, fast_lr: float = 0.0,
                 fast_decay: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.discriminative_weight = discriminative_weight
        self.register_buffer("chains", chains.to(torch.uint8))
        self.register_buffer("chain_labels", chain_labels.long())
        self.sweeps = sweeps
        self.generator = generator
        self.fast_lr, self.fast_decay = fast_lr, fast_decay
        for name, p in model.named_parameters():  # FPCD's fast weights (unused when fast_lr is 0)
            self.register_buffer(f"fast_{name}", torch.zeros_like(p) if fast_lr else torch.zeros(0))
        self._weight_grad = torch.empty_like(model.weight)
        self.gaps: list[float] = []

    def _sample_chains(self) -> None:
        """Advance the persistent chains, with the fast weights added (FPCD) when used."""
        m = self.model
        regular = {}
        if self.fast_lr:
            for name, p in m.named_parameters():
                regular[name] = p.detach().clone()
                p.add_(getattr(self, f"fast_{name}"))
        try:
            # the conditional model is a joint model of (image, label): its chains sample labels too
            chains, labels, _ = m.gibbs(self.chains, self.chain_labels if m.conditional else None, self.sweeps,
                                        self.generator, clamp_labels=False)
        finally:
            for name, p in m.named_parameters():
                if name in regular:
                    p.copy_(regular[name])
        self.chains.copy_(chains)
        if m.conditional:
            self.chain_labels.copy_(labels)

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        m = self.model
        with torch.no_grad():
            self._sample_chains()
            grads, gap = m.pcd_gradient(x, y if m.conditional else None, self.chains,
                                        self.chain_labels if m.conditional else None, self._weight_grad,
                                        self.discriminative_weight)
            if self.fast_lr:  # Tieleman & Hinton 2009: fast weights follow the same direction and decay
                for name in grads:
                    getattr(self, f"fast_{name}").mul_(1.0 - self.fast_decay).add_(grads[name], alpha=self.fast_lr)
        self.gaps.append(gap)
        linear = sum((p * grads[name]).sum() for name, p in m.named_parameters())
        return gap - linear + linear.detach()


def rbm_optimizer(model: CategoricalRBM, cfg: RBMTrainConfig) -> torch.optim.SGD:
    """SGD with weight decay on the weights only and the label layer's faster rate."""
    label = cfg.label_lr_factor
    groups = [{"params": [model.weight], "weight_decay": cfg.weight_decay, "lr": cfg.lr},
              {"params": [model.visible_bias, model.hidden_bias], "weight_decay": 0.0, "lr": cfg.lr},
              {"params": [model.label_weight], "weight_decay": cfg.weight_decay, "lr": cfg.lr * label},
              {"params": [model.label_bias], "weight_decay": 0.0, "lr": cfg.lr * label}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum_start)


def build_rbm(cfg: RBMTrainConfig, conditional: bool, independent: IndependentModel) -> CategoricalRBM:
    height, width = independent.log_probs.shape[1:3]
    model = CategoricalRBM(RBMConfig(height=height, width=width, levels=4, hidden=cfg.hidden,
                                     classes=CLASSES if conditional else 0, init_std=cfg.init_std))
    model.set_visible_bias_from(independent.log_probs[0])
    return model


def train_rbm(cfg: RBMTrainConfig, conditional: bool, data: LevelData, independent: IndependentModel, seed: int,
              checkpoint_path: str | os.PathLike | None = None, description: str = "rbm",
              ) -> tuple[CategoricalRBM, Any, list[dict[str, Any]], np.ndarray, np.ndarray]:
    """PCD training of one RBM. Returns the model, fit's result, per-epoch history (with
    validation PLL and free energies), the chains after each epoch and the per-update
    free-energy gaps."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_rbm(cfg, conditional, independent)
    start = torch.randperm(len(data.train_x), generator=generator)[: cfg.chains]
    trainer = RBMPCDTrainer(model, torch.from_numpy(data.train_x[start.numpy()]),
                            torch.from_numpy(data.train_y[start.numpy()]), cfg.sweeps, generator,
                            cfg.discriminative_weight if conditional else 0.0,
                            cfg.fast_lr["rbm_cond" if conditional else "rbm"], cfg.fast_decay)
    optimizer = rbm_optimizer(model, cfg)
    steps_per_epoch = len(data.train_x) // cfg.batch_size
    schedule = MomentumSchedule(optimizer, steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.momentum_switch_epochs,
                                cfg.momentum_start, cfg.momentum_final)
    batches, (train_x, train_y) = _shuffled_batches(data, cfg.batch_size, seed)
    n_val = min(cfg.val_images, len(data.val_x))
    val_x, val_y = torch.from_numpy(data.val_x[:n_val]), torch.from_numpy(data.val_y[:n_val])
    monitor_x = train_x[:n_val]

    @torch.no_grad()
    def on_epoch_end(epoch: int) -> dict[str, Any]:
        labels = val_y if conditional else None
        extra = {"val_pll": float(model.pseudo_log_likelihood(val_x, labels).mean()),
                 "val_label_accuracy": float((model.label_scores(val_x).argmax(1) == val_y).float().mean())
                 if conditional else float("nan"),
                 "val_free_energy": float(model.free_energy(val_x, labels).mean()),
                 "train_free_energy": float(model.free_energy(monitor_x, train_y[:n_val] if conditional else None)
                                            .mean()),
                 "chain_samples": trainer.chains[:EPOCH_GRID].numpy().copy(),
                 "gaps": np.asarray(trainer.gaps, dtype=np.float64)}
        trainer.gaps.clear()
        return extra

    result = fit(trainer, optimizer, batches, trainer.loss, cfg.epochs, checkpoint_path=checkpoint_path,
                 scheduler=schedule, on_epoch_end=on_epoch_end, description=description,
                 fingerprint=params_fingerprint({"rbm": asdict(cfg), "conditional": conditional, "seed": seed,
                                                 "n_train": len(data.train_x)}))
    model.eval()
    return (model, result, *_epoch_records(result, trainer.chains[:EPOCH_GRID].shape))


def train_grid(cfg: GridTrainConfig, conditional: bool, data: LevelData, independent: IndependentModel,
               class_independent: IndependentModel, seed: int, checkpoint_path: str | os.PathLike | None = None,
               description: str = "potts") -> tuple[PottsModel, Any, list[dict[str, Any]], np.ndarray, np.ndarray]:
    """PCD training of one grid model from the independent model (so it can only add
    structure). Returns what :func:`train_rbm` returns (gaps: data minus chain energy)."""
    generator = torch.Generator().manual_seed(seed)
    model = (class_independent if conditional else independent).as_potts()
    chain_labels = torch.arange(cfg.chains) % CLASSES if conditional else None
    start = (class_independent.sample(cfg.chains, generator, labels=chain_labels) if conditional
             else independent.sample(cfg.chains, generator))
    trainer = GridPCDTrainer(model, start, chain_labels, cfg.sweeps, cfg.persistent)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches, _ = _shuffled_batches(data, cfg.batch_size, seed)
    n_val = min(1000, len(data.val_x))
    val_x, val_y = torch.from_numpy(data.val_x[:n_val]), torch.from_numpy(data.val_y[:n_val])

    @torch.no_grad()
    def on_epoch_end(epoch: int) -> dict[str, Any]:
        labels = val_y if conditional else None
        steps = np.asarray(trainer.step_energies, dtype=np.float64)
        trainer.step_energies.clear()
        return {"val_pll": float(model.pseudo_log_likelihood(val_x, labels).mean()),
                "val_energy": float(model.energy(val_x, labels).mean()),
                "chain_energy": float(model.energy(trainer.chains, chain_labels).mean()),
                "w_h": float(model.coupling[0]), "w_v": float(model.coupling[1]),
                "chain_samples": trainer.chains[:EPOCH_GRID].numpy().copy(), "gaps": steps}

    result = fit(trainer, optimizer, batches, trainer.loss, cfg.epochs, checkpoint_path=checkpoint_path,
                 on_epoch_end=on_epoch_end, description=description,
                 fingerprint=params_fingerprint({"pcd": asdict(cfg), "conditional": conditional, "seed": seed,
                                                 "n_train": len(data.train_x)}))
    model.eval()
    return (model, result, *_epoch_records(result, trainer.chains[:EPOCH_GRID].shape))


def _shuffled_batches(data: LevelData, batch_size: int, seed: int) -> tuple[Any, tuple[torch.Tensor, torch.Tensor]]:
    """epoch -> that epoch's mini-batches of (images, labels) (a pure function of the seed
    and epoch, so a resumed run sees the same order), and the training tensors."""
    arrays = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)

    def batches(epoch: int) -> TensorBatches:
        return TensorBatches(arrays, batch_size, order=epoch_permutation(len(arrays[0]), seed, epoch), drop_last=True)

    return batches, arrays


def _epoch_records(result: Any, shape: tuple[int, ...]) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """fit's per-epoch extras split into the history (numbers), the chains shown after each
    epoch and the per-update free-energy gaps."""
    history, samples, gaps = [], [], []
    for entry in result.history:
        extra = dict(entry.extra)
        samples.append(np.asarray(extra.pop("chain_samples")))
        gaps.extend(np.asarray(extra.pop("gaps")).tolist())
        history.append({"epoch": entry.epoch, "loss": entry.train_loss, "seconds": entry.seconds, **extra})
    return history, np.asarray(samples, dtype=np.uint8).reshape(-1, *shape), np.asarray(gaps, dtype=np.float64)


def train_job(config: Mapping[str, Any], mnist4: str, model_path: str, epochs_path: str,
              device: str = "auto") -> dict[str, Any]:
    """Fit one model and save it to ``model_path``; per-epoch chains and per-update
    free-energy gaps go to ``epochs_path``. The per-epoch checkpoint lives beside the
    model (not an output, so a killed job resumes from it). Training runs on the CPU:
    the samplers are CPU kernels and the RBM's sparse statistics are small."""
    cfg = build(PottsRunConfig, config)
    if cfg.model == "independent":
        raise ValueError("the independent model is fitted by counting in the evaluate job; it has no training")
    checkpoint_path = Path(model_path).parent / "checkpoint.pt"
    seed_everything(cfg.seed)
    if pick_device(device).type != "cpu":
        log.info("PCD training runs on the CPU; device %s is not used", device)
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    independent, class_independent = fit_independent(data, cfg.smoothing)
    conditional = cfg.model in CONDITIONAL
    if cfg.model in RBM_MODELS:
        model, result, history, samples, gaps = train_rbm(cfg.rbm(), conditional, data, independent, cfg.seed,
                                                          checkpoint_path, cfg.model)
    else:
        model, result, history, samples, gaps = train_grid(cfg.grid(), conditional, data, independent,
                                                           class_independent, cfg.seed, checkpoint_path, cfg.model)
    payload = {"kind": cfg.model, "run": asdict(cfg), "config": asdict(model.config),
               "state_dict": model.state_dict(), "diverged": result.diverged, "history": history,
               "train_seconds": result.train_seconds, "n_train": len(data.train_x), "n_val": len(data.val_x),
               "steps_run": len(gaps)}
    with atomic_path(model_path) as tmp:
        torch.save(payload, tmp)
    save_npz_atomic(epochs_path, epoch_samples=samples, step_gap=gaps,
                    steps_per_epoch=np.array([len(gaps) // max(len(history), 1)] * len(history), dtype=np.int64))
    log.info("%s seed %d: %d epochs in %.1f s", cfg.model, cfg.seed, len(history), result.train_seconds)
    return payload


def load_trained(model_path: str | os.PathLike) -> tuple[str, nn.Module, dict[str, Any]]:
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    kind = payload["kind"]
    if kind in GRID_MODELS:
        model: nn.Module = PottsModel(PottsConfig(**payload["config"]))
    elif kind in RBM_MODELS:
        model = CategoricalRBM(RBMConfig(**payload["config"]))
    else:
        raise ValueError(f"{model_path}: unknown model kind {kind!r}")
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return kind, model, payload


# ----------------------------------------------------------------------------- likelihood

def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


@torch.no_grad()
def grid_log_z(model: PottsModel, base: IndependentModel, chains: int, steps: int, power: float,
               generator: torch.Generator) -> dict[str, Any]:
    """log Z of a grid model (per class for potts_cond) by AIS, and the doubling check: a
    run with half the chains and half the steps. ``converged`` when no log Z moved by
    more than 0.1 nats."""
    labels = list(range(model.config.classes)) if model.conditional else [None]
    full, half, ess = [], [], []
    for label in labels:
        result = ais_potts(model, base, chains, power_schedule(steps, power), generator, label=label)
        half.append(ais_potts(model, base, max(chains // 2, 2), power_schedule(max(steps // 2, 1), power),
                              generator, label=label).log_z)
        full.append(result.log_z)
        ess.append(result.ess)
    shift = float(np.max(np.abs(np.asarray(full) - np.asarray(half))))
    return {"log_z": np.asarray(full), "log_z_half": np.asarray(half), "doubling_shift": shift,
            "converged": bool(shift <= 0.1), "ess": float(min(ess))}


@torch.no_grad()
def grid_log_prob(model: PottsModel, x: np.ndarray, log_z: np.ndarray, prior: np.ndarray) -> np.ndarray:
    images = torch.from_numpy(x)
    if not model.conditional:
        return -model.energy(images).double().numpy() - log_z[0]
    per_class = np.stack([-model.energy(images, torch.full((len(x),), k)).double().numpy() - log_z[k]
                          for k in range(CLASSES)], axis=1)
    return mixture_log_prob(per_class, prior)


@torch.no_grad()
def likelihood_metrics(kind: str, model: nn.Module | None, data: LevelData, independent: IndependentModel,
                       class_independent: IndependentModel, cfg: AnalysisConfig,
                       generator: torch.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test (and validation) NLLs of one model beside its baseline, with the estimate that
    cannot flatter and its margin. Returns (metrics, extra)."""
    prior = class_prior(data.train_y)
    base_test = baseline_log_prob(kind, data.test_x, independent, class_independent, prior)
    base_val = baseline_log_prob(kind, data.val_x, independent, class_independent, prior)
    out: dict[str, Any] = {"independent_nll_nats": float(-independent.log_likelihood(data.test_x).mean()),
                           "baseline_nll_nats": float(-base_test.mean()),
                           "baseline": "class_mixture" if kind in CONDITIONAL else "independent"}
    extra: dict[str, Any] = {}
    if kind == "independent":
        logp = independent.log_likelihood(data.test_x)
        nll, se = _mean_se(-logp)
        out.update(test_nll_nats=nll, test_nll_se=se, val_nll_nats=float(-independent.log_likelihood(data.val_x).mean()),
                   nll_gain_nats=0.0, likelihood_method="exact")
        return out, extra
    n_raise = min(cfg.raise_images, len(data.test_x))
    raise_x = torch.from_numpy(data.test_x[:n_raise])
    if kind in GRID_MODELS:
        base = class_independent if model.conditional else independent
        z = grid_log_z(model, base, cfg.grid_ais_chains, cfg.grid_ais_steps, cfg.ais_power, generator)
        logp_test = grid_log_prob(model, data.test_x, z["log_z"], prior)
        logp_val = grid_log_prob(model, data.val_x, z["log_z"], prior)
        out.update(ais_log_z=float(np.mean(z["log_z"])), ais_doubling_shift=z["doubling_shift"],
                   ais_converged=z["converged"], ais_ess=z["ess"], likelihood_method="ais+raise")
        extra.update(ais_log_z=z["log_z"].tolist(), ais_log_z_half=z["log_z_half"].tolist())
        betas = power_schedule(cfg.raise_steps, cfg.ais_power)
        if model.conditional:
            # log p(x) >= log p(y) + log p(x | y) at the true label: conservative twice over
            y = data.test_y[:n_raise]
            lower = np.empty(n_raise)
            for k in range(CLASSES):
                rows = np.flatnonzero(y == k)
                if len(rows):
                    lower[rows] = np.log(prior[k]) + raise_potts(model, base, raise_x[rows], betas, generator, label=k)
            labels = torch.from_numpy(data.test_y)
            cond = -model.energy(torch.from_numpy(data.test_x), labels).double().numpy() - z["log_z"][data.test_y]
            out["test_conditional_nll_nats"] = float(-cond.mean())
            out["independent_conditional_nll_nats"] = class_independent.nll(data.test_x, data.test_y)
        else:
            lower = raise_potts(model, base, raise_x, betas, generator)
    else:
        betas = power_schedule(cfg.ais_steps, cfg.ais_power)
        base_probs = independent.log_probs[0]
        full = ais_rbm(model, base_probs, cfg.ais_chains, betas, generator)
        half = ais_rbm(model, base_probs, max(cfg.ais_chains // 2, 2), power_schedule(max(cfg.ais_steps // 2, 1),
                                                                                       cfg.ais_power), generator)
        log_z = full.log_z
        logp_test = model.unnormalised_log_prob(torch.from_numpy(data.test_x)).double().numpy() - log_z
        logp_val = model.unnormalised_log_prob(torch.from_numpy(data.val_x)).double().numpy() - log_z
        shift = abs(full.log_z - half.log_z)
        out.update(ais_log_z=log_z, ais_doubling_shift=shift, ais_converged=bool(shift <= 0.1), ais_ess=full.ess,
                   likelihood_method="ais+raise")
        lower = raise_log_prob(model, base_probs, raise_x, power_schedule(cfg.raise_steps, cfg.ais_power), generator)
        extra["ais_log_weights"] = full.log_weights.tolist()
    gain, gain_se = _mean_se(logp_test - base_test)
    # RAISE: the gain that cannot flatter, on the first test images, paired with the baseline there
    conservative, conservative_se = _mean_se(lower - base_test[:n_raise])
    out.update(test_nll_raise_nats=float(-lower.mean()), raise_images=n_raise,
               baseline_nll_raise_images_nats=float(-base_test[:n_raise].mean()),
               test_nll_ais_raise_images_nats=float(-logp_test[:n_raise].mean()))
    extra["raise_log_prob"] = lower.tolist()
    out.update(test_nll_nats=float(-logp_test.mean()), test_nll_se=float(logp_test.std(ddof=1) / math.sqrt(len(logp_test))),
               val_nll_nats=float(-logp_val.mean()), val_baseline_nll_nats=float(-base_val.mean()),
               nll_gain_nats=gain, nll_gain_nats_se=gain_se, conservative_gain_nats=conservative,
               conservative_gain_nats_se=conservative_se,
               conservative_margin_nats=conservative - 2 * conservative_se)
    return out, extra


# ----------------------------------------------------------------------------- sampling

@dataclass
class SampleRun:
    images: np.ndarray  # (N, 28, 28) levels after the last sweep
    snapshots: dict[int, np.ndarray]  # sweep -> (N, 28, 28)
    labels: np.ndarray  # intended classes (empty for unconditional models)
    sweep_seconds: float  # wall seconds per sweep of all chains
    sweep_cpu_seconds: float
    mode: np.ndarray | None = None  # RBMs: most probable image given the last hidden state
    start: np.ndarray | None = None  # (N, 28, 28) levels the chains started from


def noise_start(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 4, (n, SIDE, SIDE), generator=generator, dtype=torch.uint8)


def chain_labels(kind: str, n: int) -> np.ndarray:
    """The clamped digits of n chains: 0..9 in turn for conditional models, else none."""
    return np.arange(n) % CLASSES if kind in CONDITIONAL else np.zeros(0, dtype=np.int64)


def chain_start(kind: str, labels: np.ndarray, n: int, conditional_start: str,
                class_independent: IndependentModel, generator: torch.Generator) -> torch.Tensor:
    """(n, 28, 28) starting levels: uniform noise, or for conditional models with
    ``conditional_start`` "class_independent" a draw of the class-conditional
    independent-pixel model for each chain's digit."""
    check_start(conditional_start)
    if kind in CONDITIONAL and conditional_start == "class_independent":
        return class_independent.sample(n, generator, labels=torch.from_numpy(labels)).view(n, SIDE, SIDE)
    return noise_start(n, generator)


@torch.no_grad()
def sample_block(kind: str, model: nn.Module | None, independent: IndependentModel,
                 class_independent: IndependentModel, n: int, sweeps: int, checkpoints: Sequence[int],
                 conditional_start: str, generator: torch.Generator) -> SampleRun:
    """n chains by our block sampler (numba checkerboard for the grid models, torch block
    Gibbs for the RBMs) from ``chain_start``; conditional models get labels 0..9 in turn."""
    label_array = chain_labels(kind, n)
    labels = torch.from_numpy(label_array) if kind in CONDITIONAL else None
    if kind == "independent":
        images = independent.sample(n, generator).numpy()
        return SampleRun(images, {c: images for c in checkpoints}, label_array, 0.0, 0.0)
    snapshots: dict[int, np.ndarray] = {}
    walls, cpus = [], []
    x = chain_start(kind, label_array, n, conditional_start, class_independent, generator)
    start = x.numpy().copy()
    h = None
    if kind in GRID_MODELS:
        sampler = CheckerboardGibbs(SIDE, SIDE)
        sampler.set_parameters(*model.sampler_parameters())
        padded = sampler.pad(x)
    for t in progress(range(1, sweeps + 1), desc="sampling", leave=False):
        wall, cpu = time.perf_counter(), time.process_time()
        if kind in GRID_MODELS:
            sampler.sweep(padded, 1, generator, labels=labels)
        else:
            x, _, h = model.gibbs(x, labels, 1, generator)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if t in checkpoints:
            snapshots[t] = (sampler.unpad(padded) if kind in GRID_MODELS else x).numpy().copy()
    mode = model.visible_mode(h).view(n, SIDE, SIDE).numpy() if h is not None else None
    return SampleRun(snapshots[sweeps], snapshots, label_array, float(np.median(walls)), float(np.median(cpus)), mode,
                     start)


def energy_iat(kind: str, model: nn.Module, start: np.ndarray, labels: np.ndarray, sweeps: int,
               generator: torch.Generator) -> float:
    """Integrated autocorrelation time (sweeps) of the energy of chains continued from
    ``start`` (free energy for the RBMs, labels clamped)."""
    x = torch.from_numpy(start)
    lab = torch.from_numpy(labels) if len(labels) else None
    series = np.empty((len(x), sweeps))
    with torch.no_grad():
        if kind in GRID_MODELS:
            sampler = CheckerboardGibbs(SIDE, SIDE)
            sampler.set_parameters(*model.sampler_parameters())
            padded = sampler.pad(x)
            for t in range(sweeps):
                sampler.sweep(padded, 1, generator, labels=lab)
                series[:, t] = model.energy(sampler.unpad(padded), lab).numpy()
        else:
            for t in range(sweeps):
                x, _, _ = model.gibbs(x, lab, 1, generator)
                series[:, t] = model.free_energy(x, lab).numpy()
    return integrated_autocorrelation_time(series)


# ----------------------------------------------------------------------------- scoring

def steps_to_digit(recognised: np.ndarray, checkpoints: Sequence[int]) -> tuple[float, np.ndarray]:
    """From (checkpoints, N) booleans: each chain's first checkpoint sweep at which it is
    recognised (inf if never) and their median (inf when most chains never are)."""
    recognised = np.asarray(recognised, dtype=bool)
    first = np.full(recognised.shape[1], np.inf)
    for row, sweep in zip(recognised[::-1], list(checkpoints)[::-1]):
        first[row] = sweep
    return float(np.median(first)), first


def score_samples(clf: Any, run: SampleRun | Any, labels: np.ndarray, checkpoints: Sequence[int],
                  reference_stats: str, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference classifier's view of one sampler's chains: FID, recognisable
    fraction, class entropy and inception score of the final samples, conditional
    recognition (conditional models), steps to a digit from the snapshots (a chain is a
    digit once the classifier gives it > 0.9, and for conditional models its intended
    class), the share of starting images that already are digits (and, conditional
    models, their conditional recognition), and the same scores of the RBMs' mode view."""
    from rgbench.evaluation.quality import conditional_recognition, sample_quality

    quality = sample_quality(clf, to_grey(run.images), reference_stats)
    out = {"fid": quality["fid"], "recognisable_fraction": quality["recognisable_fraction"],
           "class_entropy": quality["class_entropy"], "inception_score": quality["inception_score"],
           "n_samples": quality["n_samples"]}
    extra: dict[str, Any] = {"class_histogram": quality["class_histogram"]}
    if len(labels):
        out["conditional_recognition"] = conditional_recognition(clf, to_grey(run.images), labels)

    def is_digit(images: np.ndarray) -> np.ndarray:
        probs = clf.predict_proba(to_grey(images))
        ok = probs.max(1) > RECOGNISED
        return ok & (probs.argmax(1) == labels) if len(labels) else ok

    if getattr(run, "start", None) is not None:  # what the chains owe to their start
        out["start_digit_fraction"] = float(is_digit(run.start).mean())
        if len(labels):
            out["start_conditional_recognition"] = conditional_recognition(clf, to_grey(run.start), labels)
    recognised = [is_digit(run.snapshots[sweep]) for sweep in checkpoints]
    median, first = steps_to_digit(np.asarray(recognised), checkpoints)
    out["steps_to_digit"] = median
    out["digit_fraction"] = float(np.isfinite(first).mean())
    out["seconds_to_digit"] = median * run.sweep_seconds
    out["cpu_seconds_to_digit"] = median * run.sweep_cpu_seconds
    out["sweep_seconds"] = run.sweep_seconds
    out["chain_sweeps_per_cpu_second"] = len(run.images) / run.sweep_cpu_seconds if run.sweep_cpu_seconds else float("nan")
    extra["digit_fraction_by_sweep"] = {int(s): float(r.mean()) for s, r in zip(checkpoints, recognised)}
    if getattr(run, "mode", None) is not None:
        mode = sample_quality(clf, to_grey(run.mode), reference_stats)
        out.update(fid_mode=mode["fid"], recognisable_fraction_mode=mode["recognisable_fraction"],
                   class_entropy_mode=mode["class_entropy"])
        if len(labels):
            out["conditional_recognition_mode"] = conditional_recognition(clf, to_grey(run.mode), labels)
    return {prefix + k: v for k, v in out.items()}, extra


def ceiling_scores(clf: Any, data: LevelData, n: int, reference_stats: str) -> dict[str, Any]:
    """The same scores of real test images rendered through the 4 levels: the ceiling."""
    from rgbench.evaluation.quality import conditional_recognition, sample_quality

    n = min(n, len(data.test_x))
    grey = to_grey(data.test_x[:n])
    quality = sample_quality(clf, grey, reference_stats)
    return {"ceiling_fid": quality["fid"], "ceiling_recognisable_fraction": quality["recognisable_fraction"],
            "ceiling_class_entropy": quality["class_entropy"],
            "ceiling_conditional_recognition": conditional_recognition(clf, grey, data.test_y[:n])}


def relative_to_ceiling(metrics: dict[str, Any]) -> None:
    """Quality as a share of the ceiling's (the targets' measure)."""
    ceiling = metrics["ceiling_recognisable_fraction"]
    for key in ("recognisable_fraction", "recognisable_fraction_mode"):
        if key in metrics and ceiling:
            metrics[key + "_vs_ceiling"] = metrics[key] / ceiling


# ----------------------------------------------------------------------------- evaluate

def _provenance(payload: Mapping[str, Any] | None, data: LevelData, mnist4: str, n_params: int) -> dict[str, Any]:
    if payload is None:
        return provenance(n_train=len(data.train_x), n_val=len(data.val_x), n_test=len(data.test_x),
                          data_sha256=file_sha256(mnist4), n_params=n_params)
    return provenance(n_train=payload["n_train"], n_val=payload["n_val"], n_test=len(data.test_x),
                      data_sha256=file_sha256(mnist4), n_params=n_params, epochs_run=len(payload["history"]),
                      steps_run=payload["steps_run"])


def evaluate_job(config: Mapping[str, Any], analysis: Mapping[str, Any], mnist4: str, model_path: str | None,
                 reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Likelihoods, our sampler's samples and their scores; the run's metrics.json."""
    from rgbench.evaluation.quality import conditional_recognition
    from rgbench.evaluation.reference import load_reference_classifier

    cfg = build(PottsRunConfig, config)
    acfg = build(AnalysisConfig, analysis)
    seed_everything(acfg.seed)
    generator = torch.Generator().manual_seed(10_000 + acfg.seed)
    started = time.perf_counter()
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    independent, class_independent = fit_independent(data, cfg.smoothing)
    kind, model, payload = cfg.model, None, None
    if kind != "independent":
        if model_path is None:
            raise ValueError(f"{kind} needs its trained model")
        kind, model, payload = load_trained(model_path)
    metrics, extra = likelihood_metrics(kind, model, data, independent, class_independent, acfg, generator)
    sweeps = acfg.sweeps(kind)
    checkpoints = checkpoints_for(acfg.checkpoints, sweeps)
    run = sample_block(kind, model, independent, class_independent, acfg.samples, sweeps, checkpoints,
                       acfg.conditional_start, generator)
    comparison = None
    if kind in CONDITIONAL and acfg.comparison_start_chains:
        # the same sampler from the other start: how much the conditional scores owe to the start
        other = next(start for start in STARTS if start != acfg.conditional_start)
        comparison = sample_block(kind, model, independent, class_independent, acfg.comparison_start_chains, sweeps,
                                  [sweeps], other, generator)
    if model is not None:
        n_pll = min(acfg.pll_images, len(data.test_x))
        labels = torch.from_numpy(data.test_y[:n_pll]) if kind in CONDITIONAL else None
        metrics["pseudo_log_likelihood"] = float(model.pseudo_log_likelihood(torch.from_numpy(data.test_x[:n_pll]),
                                                                             labels).mean())
        k = min(acfg.iat_chains, acfg.samples)
        metrics["energy_iat"] = energy_iat(kind, model, run.images[:k], run.labels[:k], acfg.iat_sweeps, generator)
        metrics["iat_reliable"] = bool(acfg.iat_sweeps >= 50 * metrics["energy_iat"])
        if kind in GRID_MODELS:
            metrics["w_h"], metrics["w_v"] = float(model.coupling[0]), float(model.coupling[1])
    metrics["analysis_seconds"] = time.perf_counter() - started
    torch_device = pick_device(device)
    clf = load_reference_classifier(reference_model, device=torch_device)
    scores, score_extra = score_samples(clf, run, run.labels, checkpoints, reference_stats)
    metrics.update(scores)
    if comparison is not None:
        metrics[f"conditional_recognition_{other}_start"] = conditional_recognition(clf, to_grey(comparison.images),
                                                                                   comparison.labels)
    metrics.update(ceiling_scores(clf, data, acfg.ceiling_images, reference_stats))
    relative_to_ceiling(metrics)
    extra.update(score_extra)
    save_npz_atomic(samples_path, samples=run.images, labels=run.labels,
                    mode=run.mode if run.mode is not None else np.zeros((0, SIDE, SIDE), np.uint8),
                    checkpoints=np.asarray(checkpoints),
                    snapshots=np.stack([run.snapshots[c][:EPOCH_GRID] for c in checkpoints]),
                    digit_fraction=np.asarray(list(score_extra["digit_fraction_by_sweep"].values())))
    if payload is not None:
        metrics["train_seconds"] = payload["train_seconds"]
        metrics["diverged"] = bool(payload["diverged"])
        extra["history"] = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in payload["history"]]
    n_params = (int(sum(t.numel() for t in payload["state_dict"].values()) if kind in GRID_MODELS else
                    _rbm_parameters(model)) if model is not None else int(independent.log_probs[0].size))
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=run_id, params=table_params(cfg, "block"),
                  seed=cfg.seed, metrics=metrics, wall_seconds=time.perf_counter() - started,
                  device=describe_device(torch_device), extra=extra,
                  provenance=_provenance(payload, data, mnist4, n_params))
    log.info("%s seed %d: test NLL %s (baseline %.2f), recognisable %.3f", kind, cfg.seed,
             metrics.get("test_nll_nats"), metrics["baseline_nll_nats"], metrics["recognisable_fraction"])
    return metrics


def _rbm_parameters(model: CategoricalRBM) -> int:
    """Free parameters of an RBM (the label layer only when it exists)."""
    count = model.weight.numel() + model.visible_bias.numel() + model.hidden_bias.numel()
    if model.conditional:
        count += model.label_weight.numel() + model.label_bias.numel()
    return int(count)


# ----------------------------------------------------------------------------- THRML

def thrml_graph(kind: str, model: nn.Module) -> tuple[Any, Any, Any]:
    """(graph, parameters of the model, image converter) for THRML."""
    from rgbench.models.potts_thrml import GridFactorGraph, RBMLayerGraph

    if kind in GRID_MODELS:
        classes = model.config.classes
        graph = GridFactorGraph(SIDE, SIDE, classes)
        bias, w_h, w_v = model.sampler_parameters()
        params = (bias.numpy().reshape(classes, SIDE * SIDE, 4), np.float32(w_h), np.float32(w_v))
        to_images = graph.to_images
    else:
        graph = RBMLayerGraph(SIDE * SIDE, model.config.hidden, model.config.classes)
        params = (model.weight.detach().numpy(), model.visible_bias.detach().numpy(),
                  model.hidden_bias.detach().numpy())
        if model.conditional:
            params += (model.label_weight.detach().numpy(),)
        to_images = lambda state: graph.to_images(state, SIDE, SIDE)  # noqa: E731
    return graph, params, to_images


def thrml_job(config: Mapping[str, Any], thrml: Mapping[str, Any], mnist4: str, model_path: str,
              reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
              device: str = "auto") -> dict[str, Any]:
    """THRML's samples of one trained model from uniform noise, scored exactly as our
    sampler's are; writes the THRML row's metrics.json (``sampler: thrml``)."""
    from rgbench.models.potts_thrml import configure_jax

    configure_jax(max(1, torch.get_num_threads()))
    from rgbench.evaluation.reference import load_reference_classifier
    from rgbench.models.potts_thrml import ThrmlSampler

    run_cfg = build(PottsRunConfig, config)
    cfg = build(ThrmlConfig, thrml)
    started = time.perf_counter()
    seed_everything(run_cfg.seed)
    data = load_levels(mnist4, run_cfg.train_limit, run_cfg.test_limit)
    kind, model, payload = load_trained(model_path)
    graph, params, to_images = thrml_graph(kind, model)
    sampler = ThrmlSampler(graph.program, graph.blocks)
    generator = torch.Generator().manual_seed(20_000 + run_cfg.seed)
    labels = chain_labels(kind, cfg.samples)
    _, class_independent = fit_independent(data, run_cfg.smoothing)
    start = chain_start(kind, labels, cfg.samples, cfg.conditional_start, class_independent, generator).numpy()
    state = graph.to_state(start) if kind in GRID_MODELS else graph.to_state(start, np.random.default_rng(run_cfg.seed))
    clamp = graph.clamp(labels if len(labels) else None, cfg.samples)
    sweeps = cfg.sweeps(kind)
    checkpoints = checkpoints_for(cfg.checkpoints, sweeps)
    result = sampler.run(params, state, clamp, sweeps, 30_000 + run_cfg.seed, to_images, tuple(checkpoints))
    run = SampleRun(result.images, result.snapshots, labels, result.sweep_seconds, result.sweep_cpu_seconds,
                    start=start)
    if kind in RBM_MODELS:  # the mode view from THRML's last hidden state
        hidden = torch.from_numpy(np.asarray(result.final_state[0]).reshape(cfg.samples, -1).astype(np.float32))
        run.mode = model.visible_mode(hidden).view(-1, SIDE, SIDE).numpy()
    clf = load_reference_classifier(reference_model, device=pick_device(device))
    metrics, extra = score_samples(clf, run, labels, checkpoints, reference_stats)
    metrics.update(ceiling_scores(clf, data, cfg.ceiling_images, reference_stats))
    relative_to_ceiling(metrics)
    metrics["first_call_seconds"] = result.compile_seconds
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    save_npz_atomic(samples_path, samples=run.images, labels=labels,
                    mode=run.mode if run.mode is not None else np.zeros((0, SIDE, SIDE), np.uint8),
                    checkpoints=np.asarray(checkpoints),
                    snapshots=np.stack([run.snapshots[c][:EPOCH_GRID] for c in checkpoints]),
                    digit_fraction=np.asarray(list(extra["digit_fraction_by_sweep"].values())))
    n_params = _rbm_parameters(model) if kind in RBM_MODELS else int(sum(t.numel() for t in payload["state_dict"].values()))
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=f"{run_id}_sampler-thrml",
                  params=table_params(run_cfg, "thrml"), seed=run_cfg.seed, metrics=metrics,
                  wall_seconds=time.perf_counter() - started, device="cpu (jax)", extra=extra,
                  provenance=_provenance(payload, data, mnist4, n_params))
    log.info("thrml %s seed %d: recognisable %.3f, first call %.1f s, %.4f s per sweep", kind, run_cfg.seed,
             metrics["recognisable_fraction"], result.compile_seconds, result.sweep_seconds)
    return metrics
