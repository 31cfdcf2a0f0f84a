"""PCD training of the potts_ebm models: lattice Potts models and categorical RBMs.

- Lattice models (``potts``, ``potts_cond``): persistent contrastive divergence (PCD-k, or
  CD-k from the data batch) with Adam, starting from the independent-pixel model so that
  training can only add structure; the negatives come from our checkerboard sampler.
- RBMs (``rbm``, ``rbm_cond``): PCD-k with SGD, momentum 0.5 then 0.9, a learning rate
  decayed linearly to 0 and weight decay on the weights (Hinton's practical guide;
  Tieleman 2008), optionally with fast weights (FPCD, Tieleman & Hinton 2009).

Both go through :func:`rgbench.training.fit` (per-epoch checkpoints, exact resume): the
persistent chains and FPCD's fast weights are module buffers and the RBM's sampling
generator is the trainer's extra state, so a resumed run continues the uninterrupted one
exactly. The validation split is never trained on; its pseudo-log-likelihood and (free)
energies are logged per epoch. Given a :class:`rgbench.probe.Probe`, training takes the
probe's steps at the real model, batch and chain sizes (checkpoint and resume half-way)
and the per-epoch validation keeps the probe's batches.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn as nn

from rgbench.data.preprocess import CLASSES, LEVELS, LevelData
from rgbench.models.potts import IndependentModel, PottsConfig, PottsModel
from rgbench.models.potts_samplers import CheckerboardGibbs
from rgbench.models.rbm import CategoricalRBM, RBMConfig
from rgbench.probe import Probe, capped
from rgbench.results import params_fingerprint
from rgbench.training import TensorBatches, epoch_permutation, fit

# The trained model kinds (names in config, tables and run ids).
LATTICE_MODELS = ("potts", "potts_cond")
RBM_MODELS = ("rbm", "rbm_cond")
CONDITIONAL = ("potts_cond", "rbm_cond")
SHOWN_CHAINS = 16  # chains kept per epoch (and per snapshot) for the figures
# Images per pseudo-likelihood batch: an RBM's holds (batch, 49 sites, 4 levels, hidden)
# floats, ~200 MB at 250 images and 500 hidden units, where 10,000 images at once need ~8 GB.
PLL_BATCH = 250
# Bumped when what a checkpoint holds changes: 2, the RBM's sampling generator joined the
# trainer's state, so an older checkpoint is ignored rather than resumed inexactly.
CHECKPOINT_FORMAT = 2


@dataclass
class LatticeTrainConfig:
    """PCD of the lattice models (config ``pcd``)."""

    epochs: int
    batch_size: int
    lr: float
    chains: int
    sweeps: int  # k: Gibbs sweeps per parameter update
    persistent: bool  # False: CD-k, chains restart from the data batch
    val_images: int  # validation images for the per-epoch pseudo-log-likelihood and energy

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "chains", "sweeps", "val_images"):
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


# ----------------------------------------------------------------------------- trainers

class LatticePCDTrainer(nn.Module):
    """A lattice model plus its persistent chains; ``loss`` is the PCD surrogate whose
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


@contextmanager
def fast_weights_added(module: nn.Module, fast: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """FPCD (Tieleman & Hinton 2009): inside the block ``module``'s parameters named in
    ``fast`` hold regular + fast weights, so persistent chains run there; after it they are
    the regular values again, restored by copy (bit-exact, unlike subtracting)."""
    regular = {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in fast:
                regular[name] = p.detach().clone()
                p.add_(fast[name])
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name in regular:
                    p.copy_(regular[name])


@torch.no_grad()
def update_fast_weights(fast: Mapping[str, torch.Tensor], ascent: Mapping[str, torch.Tensor], lr: float,
                        decay: float) -> None:
    """FPCD's fast-weight step, in place: each fast weight shrinks by ``decay`` and moves
    ``lr`` along the same ascent direction as the regular weights."""
    for name, value in fast.items():
        value.mul_(1.0 - decay).add_(ascent[name], alpha=lr)


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

    # The chains' generator is part of the trainer's state (nn.Module's extra state, saved
    # in its state_dict): without it a resumed run would draw other samples than the
    # uninterrupted one from the checkpoint on.
    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def _fast_weights(self) -> dict[str, torch.Tensor]:
        """FPCD's fast weights by parameter name (the buffers themselves); empty for plain PCD."""
        return {name: getattr(self, f"fast_{name}") for name, _ in self.model.named_parameters()} if self.fast_lr else {}

    def _sample_chains(self) -> None:
        """Advance the persistent chains, with the fast weights added (FPCD) when used."""
        m = self.model
        with fast_weights_added(m, self._fast_weights()):
            # the conditional model is a joint model of (image, label): its chains sample labels too
            chains, labels, _ = m.gibbs(self.chains, self.chain_labels if m.conditional else None, self.sweeps,
                                        self.generator, clamp_labels=False)
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
            update_fast_weights(self._fast_weights(), grads, self.fast_lr, self.fast_decay)
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
    model = CategoricalRBM(RBMConfig(height=height, width=width, levels=LEVELS, hidden=cfg.hidden,
                                     classes=CLASSES if conditional else 0, init_std=cfg.init_std))
    model.set_visible_bias_from(independent.log_probs[0])
    return model


def pseudo_log_likelihood(model: CategoricalRBM | PottsModel, x: np.ndarray, labels: np.ndarray | None = None,
                          batch: int = PLL_BATCH) -> np.ndarray:
    """Per-image pseudo-log-likelihood of level images ``x`` (labels clamped when given), in
    batches of ``batch`` images so that its memory does not grow with the images scored."""
    out = [model.pseudo_log_likelihood(torch.from_numpy(x[i:i + batch]),
                                       None if labels is None else torch.from_numpy(labels[i:i + batch])).numpy()
           for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def pcd_fingerprint(block: str, cfg: Any, conditional: bool, seed: int, n_train: int, probe: Probe | None) -> str:
    """What a checkpoint must match to be resumed from: the training block, the data size
    and whether a probe wrote it (a probe's checkpoint never seeds a real run)."""
    return params_fingerprint({block: asdict(cfg), "conditional": conditional, "seed": seed, "n_train": n_train,
                               "format": CHECKPOINT_FORMAT, **({"probe": True} if probe is not None else {})})


def train_rbm(cfg: RBMTrainConfig, conditional: bool, data: LevelData, independent: IndependentModel, seed: int,
              checkpoint_path: str | os.PathLike | None = None, description: str = "rbm", probe: Probe | None = None,
              ) -> tuple[CategoricalRBM, Any, list[dict[str, Any]], np.ndarray, np.ndarray]:
    """PCD training of one RBM. Returns the model, fit's result, per-epoch history (with
    validation PLL and free energies), the chains after each epoch and the per-update
    free-energy gaps. A ``probe`` trains its steps and cuts the validation to its batches."""
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

    @torch.no_grad()
    def on_epoch_end(epoch: int) -> dict[str, Any]:
        n = capped(probe, n_val, PLL_BATCH)  # inside fit's measured per-epoch block
        val_x, val_y = torch.from_numpy(data.val_x[:n]), torch.from_numpy(data.val_y[:n])
        labels = val_y if conditional else None
        extra = {"val_pll": float(pseudo_log_likelihood(model, data.val_x[:n],
                                                        data.val_y[:n] if conditional else None).mean()),
                 "val_label_accuracy": float((model.label_scores(val_x).argmax(1) == val_y).float().mean())
                 if conditional else float("nan"),
                 "val_free_energy": float(model.free_energy(val_x, labels).mean()),
                 "train_free_energy": float(model.free_energy(train_x[:n], train_y[:n] if conditional else None)
                                            .mean()),
                 "chain_samples": trainer.chains[:SHOWN_CHAINS].numpy().copy(),
                 "gaps": np.asarray(trainer.gaps, dtype=np.float64)}
        trainer.gaps.clear()
        return extra

    result = fit(trainer, optimizer, batches, trainer.loss, cfg.epochs, checkpoint_path=checkpoint_path,
                 scheduler=schedule, on_epoch_end=on_epoch_end, description=description, probe=probe,
                 fingerprint=pcd_fingerprint("rbm", cfg, conditional, seed, len(data.train_x), probe))
    model.eval()
    return (model, result, *_epoch_records(result, trainer.chains[:SHOWN_CHAINS].shape))


def train_lattice(cfg: LatticeTrainConfig, conditional: bool, data: LevelData, independent: IndependentModel,
                  class_independent: IndependentModel, seed: int, checkpoint_path: str | os.PathLike | None = None,
                  description: str = "potts", probe: Probe | None = None,
                  ) -> tuple[PottsModel, Any, list[dict[str, Any]], np.ndarray, np.ndarray]:
    """PCD training of one lattice model from the independent model (so it can only add
    structure). Returns what :func:`train_rbm` returns (gaps: data minus chain energy)."""
    generator = torch.Generator().manual_seed(seed)
    model = (class_independent if conditional else independent).as_potts()
    chain_labels = torch.arange(cfg.chains) % CLASSES if conditional else None
    start = (class_independent.sample(cfg.chains, generator, labels=chain_labels) if conditional
             else independent.sample(cfg.chains, generator))
    trainer = LatticePCDTrainer(model, start, chain_labels, cfg.sweeps, cfg.persistent)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches, _ = _shuffled_batches(data, cfg.batch_size, seed)
    n_val = min(cfg.val_images, len(data.val_x))

    @torch.no_grad()
    def on_epoch_end(epoch: int) -> dict[str, Any]:
        n = capped(probe, n_val, PLL_BATCH)  # inside fit's measured per-epoch block
        val_x, val_y = torch.from_numpy(data.val_x[:n]), torch.from_numpy(data.val_y[:n])
        labels = val_y if conditional else None
        steps = np.asarray(trainer.step_energies, dtype=np.float64)
        trainer.step_energies.clear()
        return {"val_pll": float(pseudo_log_likelihood(model, data.val_x[:n],
                                                       data.val_y[:n] if conditional else None).mean()),
                "val_energy": float(model.energy(val_x, labels).mean()),
                "chain_energy": float(model.energy(trainer.chains, chain_labels).mean()),
                "w_h": float(model.coupling[0]), "w_v": float(model.coupling[1]),
                "chain_samples": trainer.chains[:SHOWN_CHAINS].numpy().copy(), "gaps": steps}

    result = fit(trainer, optimizer, batches, trainer.loss, cfg.epochs, checkpoint_path=checkpoint_path,
                 on_epoch_end=on_epoch_end, description=description, probe=probe,
                 fingerprint=pcd_fingerprint("pcd", cfg, conditional, seed, len(data.train_x), probe))
    model.eval()
    return (model, result, *_epoch_records(result, trainer.chains[:SHOWN_CHAINS].shape))


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


def load_trained(model_path: str | os.PathLike) -> tuple[str, nn.Module, dict[str, Any]]:
    """(kind, model in eval mode, the whole payload) of a model file written by the
    potts_ebm train job: ``kind``, the model's ``config`` and ``state_dict``, and the
    run's training record."""
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    kind = payload["kind"]
    if kind in LATTICE_MODELS:
        model: nn.Module = PottsModel(PottsConfig(**payload["config"]))
    elif kind in RBM_MODELS:
        model = CategoricalRBM(RBMConfig(**payload["config"]))
    else:
        raise ValueError(f"{model_path}: unknown model kind {kind!r}")
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return kind, model, payload
