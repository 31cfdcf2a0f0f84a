"""Potts energy-based models on 4-level MNIST (seed 003): train, analyse, judge.

Three jobs per (model, seed), so that training never waits for the reference classifier:

1. ``train_job``: PCD-k (or CD-k) with Adam through :func:`rgbench.training.fit`.
   Negatives come from the block sampler rebuilt from the *current* parameters at every
   step, with k sweeps actually run; the persistent chains are a buffer of the trained
   module, so they are checkpointed and a killed job resumes exactly. ``independent``
   is fitted by counting (no training).
2. ``analyse_job``: test NLL by AIS from the independent model (with its standard
   error), pseudo-log-likelihood, samples from noise, steps to coherence and the
   integrated autocorrelation time of the energy.
3. ``evaluate_job``: FID, recognisable fraction (and conditional recognition for
   ``potts_cond``) of the samples through the reference classifier; writes metrics.json.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from rgbench.data.mnist import train_mask
from rgbench.data.preprocess import level_values
from rgbench.config import build
from rgbench.io import atomic_path, file_sha256, load_npz, read_json, save_npz_atomic, write_json_atomic
from rgbench.models.potts import (IndependentModel, PottsConfig, PottsModel, PottsRBM, PottsRBMConfig,
                                  ais_potts, ais_rbm, integrated_autocorrelation_time, steps_to_coherence)
from rgbench.models.potts_samplers import CheckerboardGibbs
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, progress, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit

log = get_logger("potts_ebm")

EXPERIMENT = "potts_ebm"
MODELS = ("independent", "potts", "potts_cond", "potts_rbm")
CLASSES = 10
EPOCH_GRID = 16  # chains shown per epoch in the training figure


@dataclass
class PCDConfig:
    epochs: int
    batch_size: int
    lr: float
    chains: int
    sweeps: int  # k: Gibbs sweeps per parameter update
    persistent: bool  # False: CD-k, chains restart from the data batch
    hidden: int | None = None  # potts_rbm only (the config's `rbm` block has it, `pcd` has not)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "chains", "sweeps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class PottsRunConfig:
    """One run's hand-off: the model, its seed, the data limits and its training block
    (the config's `rbm` block for potts_rbm, `pcd` for the grid models)."""

    model: str
    seed: int
    train_limit: int  # 0: the whole train split
    test_limit: int
    smoothing: float  # add-alpha counts of the independent model
    pcd: PCDConfig

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")


def table_params(cfg: PottsRunConfig) -> dict[str, Any]:
    """The parameters a table row shows next to its metrics."""
    row: dict[str, Any] = {"model": cfg.model, "train_limit": cfg.train_limit}
    if cfg.model != "independent":
        row.update(epochs=cfg.pcd.epochs, pcd_chains=cfg.pcd.chains, pcd_sweeps=cfg.pcd.sweeps,
                   persistent=cfg.pcd.persistent, lr=cfg.pcd.lr)
    if cfg.model == "potts_rbm":
        row["hidden"] = cfg.pcd.hidden
    return row


# ----------------------------------------------------------------------------- data

@dataclass
class LevelData:
    train_x: np.ndarray  # (N, 28, 28) uint8 levels
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_levels(mnist4: str | os.PathLike, train_limit: int = 0, test_limit: int = 0) -> LevelData:
    data = load_npz(mnist4)
    keep = np.flatnonzero(train_mask(len(data["train_labels"]), data["val_index"]))
    if train_limit:
        keep = keep[:train_limit]
    stop = test_limit or len(data["test_labels"])
    return LevelData(data["train_levels"][keep], data["train_labels"][keep].astype(np.int64),
                     data["test_levels"][:stop], data["test_labels"][:stop].astype(np.int64))


def to_grey(levels: np.ndarray) -> np.ndarray:
    """4-level images -> float32 grey in [0, 1] at the bin centres (what the classifier sees)."""
    return level_values(4)[np.asarray(levels, dtype=np.int64)]


# ----------------------------------------------------------------------------- training

class PCDTrainer(nn.Module):
    """A model plus its persistent chains; ``loss`` is the PCD surrogate whose gradient
    is E_data[dE/dtheta] - E_model[dE/dtheta]."""

    def __init__(self, model: nn.Module, chains: torch.Tensor, chain_labels: torch.Tensor | None,
                 sweeps: int, persistent: bool) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("chains", chains.to(torch.uint8))
        self.register_buffer("chain_labels", chain_labels if chain_labels is not None else torch.zeros(0))
        self.sweeps = sweeps
        self.persistent = persistent
        self.step_energies: list[tuple[float, float]] = []  # (data, negatives) per update
        cfg = model.config
        self.sampler = CheckerboardGibbs(cfg.height, cfg.width) if isinstance(model, PottsModel) else None

    @torch.no_grad()
    def negatives(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """k sweeps from the persistent chains (PCD) or from the data batch (CD), run with
        the parameters as they are now; the chains are updated in place."""
        if self.persistent:
            start, labels = self.chains, (self.chain_labels.long() if self.model.conditional else None)
        else:
            start, labels = x.to(torch.uint8), (y if self.model.conditional else None)
        if self.sampler is not None:
            self.sampler.set_parameters(*self.model.sampler_parameters())
            padded = self.sampler.pad(start)
            self.sampler.sweep(padded, self.sweeps, labels=labels)
            negative = self.sampler.unpad(padded)
        else:
            negative = self.model.gibbs(start, self.sweeps)
        if self.persistent:
            self.chains.copy_(negative)
        return negative, labels

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        labels = y if self.model.conditional else None
        negative, negative_labels = self.negatives(x, y)
        data_energy = self.model.energy(x, labels).mean()
        model_energy = self.model.energy(negative, negative_labels).mean()
        self.step_energies.append((float(data_energy.detach()), float(model_energy.detach())))
        return data_energy - model_energy


def build_model(cfg: PottsRunConfig, independent: IndependentModel, class_independent: IndependentModel | None,
                ) -> nn.Module:
    """Every model starts at the independent model (so PCD can only add structure)."""
    if cfg.model == "potts":
        return independent.as_potts()
    if cfg.model == "potts_cond":
        return class_independent.as_potts()
    rbm = PottsRBM(PottsRBMConfig(hidden=cfg.pcd.hidden))
    with torch.no_grad():
        rbm.bias.copy_(torch.as_tensor(independent.log_probs[0].reshape(-1, 4), dtype=torch.float32))
    return rbm


def train_job(config: Mapping[str, Any], mnist4: str, model_path: str, samples_path: str,
              device: str = "auto") -> dict[str, Any]:
    """Fit one model and save it (with the AIS base) to ``model_path``; per-epoch chain
    samples and data/model energies go to ``samples_path``. The per-epoch checkpoint lives
    beside the model (not an output, so a killed job resumes from it)."""
    cfg = build(PottsRunConfig, config)
    checkpoint_path = Path(model_path).parent / "checkpoint.pt"
    seed_everything(cfg.seed)
    torch_device = pick_device(device)
    if torch_device.type != "cpu":
        log.info("Potts training runs on the CPU sampler kernel; device %s is not used", torch_device)
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    started = time.perf_counter()
    independent = IndependentModel.fit(data.train_x, alpha=cfg.smoothing)
    class_independent = IndependentModel.fit(data.train_x, data.train_y, classes=CLASSES, alpha=cfg.smoothing)
    payload: dict[str, Any] = {"kind": cfg.model, "run": asdict(cfg),
                               "independent_log_probs": independent.log_probs,
                               "class_independent_log_probs": class_independent.log_probs}
    history: list[dict[str, Any]] = []
    epoch_samples = np.zeros((0, EPOCH_GRID, 28, 28), dtype=np.uint8)
    step_energies: list[np.ndarray] = [np.zeros((0, 2))]
    if cfg.model != "independent":
        model = build_model(cfg, independent, class_independent)
        p = cfg.pcd
        generator = torch.Generator().manual_seed(cfg.seed)
        chain_labels = torch.arange(p.chains) % CLASSES if cfg.model == "potts_cond" else None
        start = independent.sample(p.chains, generator) if cfg.model != "potts_cond" else \
            class_independent.sample(p.chains, generator, labels=chain_labels)
        trainer = PCDTrainer(model, start, chain_labels, p.sweeps, p.persistent)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        train_x = torch.from_numpy(data.train_x)
        train_y = torch.from_numpy(data.train_y)
        monitor = torch.from_numpy(data.train_x[:1000]), torch.from_numpy(data.train_y[:1000])

        def batches(epoch: int) -> TensorBatches:
            return TensorBatches((train_x, train_y), p.batch_size,
                                 order=epoch_permutation(len(train_x), cfg.seed, epoch), drop_last=True)

        @torch.no_grad()
        def on_epoch_end(epoch: int) -> dict[str, Any]:
            chains = trainer.chains
            chain_labels_ = trainer.chain_labels.long() if model.conditional else None
            data_energy = float(model.energy(monitor[0], monitor[1] if model.conditional else None).mean())
            model_energy = float(model.energy(chains, chain_labels_).mean())
            steps = np.asarray(trainer.step_energies, dtype=np.float64).reshape(-1, 2)
            trainer.step_energies.clear()
            extra = {"data_energy": data_energy, "model_energy": model_energy,
                     "samples": chains[:EPOCH_GRID].numpy().astype(np.uint8), "step_energies": steps}
            if isinstance(model, PottsModel):
                extra["w_h"], extra["w_v"] = float(model.coupling[0]), float(model.coupling[1])
            return extra

        result = fit(trainer, optimizer, batches, trainer.loss, p.epochs, checkpoint_path=checkpoint_path,
                     on_epoch_end=on_epoch_end, description=cfg.model,
                     fingerprint=params_fingerprint(asdict(cfg)))
        for entry in result.history:
            extra = dict(entry.extra)
            epoch_samples = np.concatenate([epoch_samples, np.asarray(extra.pop("samples"))[None]])
            step_energies.append(np.asarray(extra.pop("step_energies")).reshape(-1, 2))
            history.append({"epoch": entry.epoch, "loss": entry.train_loss, "seconds": entry.seconds, **extra})
        payload.update(config=asdict(model.config), state_dict=model.state_dict(), diverged=result.diverged)
        train_seconds = result.train_seconds
    else:
        train_seconds = time.perf_counter() - started
    payload.update(history=history, train_seconds=train_seconds, n_train=len(data.train_x), n_test=len(data.test_x))
    with atomic_path(model_path) as tmp:
        torch.save(payload, tmp)
    steps = np.concatenate(step_energies)
    save_npz_atomic(samples_path, epoch_samples=epoch_samples, step_data_energy=steps[:, 0],
                    step_model_energy=steps[:, 1],
                    steps_per_epoch=np.array([len(s) for s in step_energies[1:]], dtype=np.int64),
                    data_energy=np.array([h["data_energy"] for h in history], dtype=np.float64),
                    model_energy=np.array([h["model_energy"] for h in history], dtype=np.float64))
    return payload


def load_trained(model_path: str) -> tuple[str, nn.Module | None, IndependentModel, IndependentModel, dict[str, Any]]:
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    kind = payload["kind"]
    independent = IndependentModel(payload["independent_log_probs"])
    class_independent = IndependentModel(payload["class_independent_log_probs"])
    model: nn.Module | None = None
    if kind in ("potts", "potts_cond"):
        model = PottsModel(PottsConfig(**payload["config"]))
    elif kind == "potts_rbm":
        model = PottsRBM(PottsRBMConfig(**payload["config"]))
    if model is not None:
        model.load_state_dict(payload["state_dict"])
        model.eval()
    return kind, model, independent, class_independent, payload


# ----------------------------------------------------------------------------- analysis

@dataclass
class AnalysisConfig:
    seed: int
    ais_chains: int
    ais_steps: int
    ais_chains_per_class: int
    ais_steps_per_class: int
    samples: int
    sample_sweeps: int
    iat_chains: int
    iat_sweeps: int
    pll_images: int
    energy_chains: int  # chains whose energy is traced for the coherence curve


@torch.no_grad()
def _potts_samples(model: PottsModel, n: int, sweeps: int, trace_chains: int, generator: torch.Generator,
                   labels: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """n chains from uniform noise; mean energy of the first ``trace_chains`` per sweep."""
    sampler = CheckerboardGibbs(28, 28)
    sampler.set_parameters(*model.sampler_parameters())
    x = torch.randint(0, 4, (n, 28, 28), generator=generator, dtype=torch.uint8)
    padded = sampler.pad(x)
    k = min(trace_chains, n)
    trace = np.empty(sweeps + 1)
    for t in progress(range(sweeps + 1), desc="sampling", leave=False):
        if t:
            sampler.sweep(padded, 1, generator, labels=labels)
        trace[t] = float(model.energy(sampler.unpad(padded[:k]), labels[:k] if labels is not None else None).mean())
    return sampler.unpad(padded).numpy(), trace, padded


@torch.no_grad()
def _rbm_samples(model: PottsRBM, n: int, sweeps: int, trace_chains: int,
                 generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = torch.randint(0, 4, (n, 28, 28), generator=generator, dtype=torch.uint8)
    k = min(trace_chains, n)
    trace = np.empty(sweeps + 1)
    for t in progress(range(sweeps + 1), desc="sampling", leave=False):
        if t:
            x = model.gibbs(x, 1, generator)
        trace[t] = float(model.energy(x[:k]).mean())
    return x.numpy(), trace


@torch.no_grad()
def _energy_series(model: nn.Module, start: np.ndarray, labels: np.ndarray | None, sweeps: int,
                   generator: torch.Generator) -> np.ndarray:
    """(chains, sweeps) energies of chains continued from equilibrated states."""
    x = torch.from_numpy(start)
    lab = torch.from_numpy(labels) if labels is not None else None
    series = np.empty((len(x), sweeps))
    if isinstance(model, PottsModel):
        sampler = CheckerboardGibbs(28, 28)
        sampler.set_parameters(*model.sampler_parameters())
        padded = sampler.pad(x)
        for t in range(sweeps):
            sampler.sweep(padded, 1, generator, labels=lab)
            series[:, t] = model.energy(sampler.unpad(padded), lab).numpy()
    else:
        for t in range(sweeps):
            x = model.gibbs(x, 1, generator)
            series[:, t] = model.energy(x).numpy()
    return series


@torch.no_grad()
def analyse_job(config: Mapping[str, Any], mnist4: str, model_path: str, analysis_path: str,
                samples_path: str) -> dict[str, Any]:
    """Likelihood, sampling diagnostics and samples of one trained model."""
    cfg = build(AnalysisConfig, config)
    seed = cfg.seed
    seed_everything(seed)
    generator = torch.Generator().manual_seed(10_000 + seed)
    kind, model, independent, class_independent, payload = load_trained(model_path)
    run = payload["run"]
    data = load_levels(mnist4, run["train_limit"], run["test_limit"])
    started = time.perf_counter()
    test_x = torch.from_numpy(data.test_x)
    test_y = torch.from_numpy(data.test_y)
    independent_nll = independent.nll(data.test_x)
    out: dict[str, Any] = {"model": kind, "independent_nll_nats": independent_nll}
    labels = torch.arange(cfg.samples) % CLASSES if kind == "potts_cond" else None
    extra: dict[str, Any] = {}

    if kind == "independent":
        out.update(test_nll_nats=independent_nll, test_nll_se=float(independent.log_likelihood(
            data.test_x).std(ddof=1) / math.sqrt(len(data.test_x))), ais_log_z=0.0, ais_log_z_se=0.0,
            pseudo_log_likelihood=float(independent.log_likelihood(data.test_x).mean()),
            steps_to_coherence=0, energy_iat=1.0)
        samples = independent.sample(cfg.samples, generator).numpy()
        trace = np.zeros(0)
    else:
        # --- log Z by AIS and test NLL
        if kind == "potts":
            ais = ais_potts(model, independent, cfg.ais_chains, cfg.ais_steps, generator)
            log_z = np.array([ais.log_z])
            log_z_se = np.array([ais.log_z_se])
            ess = [ais.ess]
            log_px = (-model.energy(test_x).double().numpy() - ais.log_z)
        elif kind == "potts_cond":
            results = [ais_potts(model, class_independent, cfg.ais_chains_per_class, cfg.ais_steps_per_class,
                                 generator, label=k) for k in progress(range(CLASSES), desc="AIS per class")]
            log_z = np.array([r.log_z for r in results])
            log_z_se = np.array([r.log_z_se for r in results])
            ess = [r.ess for r in results]
            # log p(x) = logsumexp_y [log p(y) + log p(x | y)], p(y) = training frequencies
            prior = np.bincount(data.train_y, minlength=CLASSES) / len(data.train_y)
            per_class = np.stack([-model.energy(test_x, torch.full((len(test_x),), k)).double().numpy() - log_z[k]
                                  for k in range(CLASSES)], axis=1)
            joint = per_class + np.log(prior)[None]
            peak = joint.max(1, keepdims=True)
            log_px = (peak + np.log(np.exp(joint - peak).sum(1, keepdims=True)))[:, 0]
            conditional_nll = float(-per_class[np.arange(len(test_x)), data.test_y].mean())
            out["test_conditional_nll_nats"] = conditional_nll
            out["independent_conditional_nll_nats"] = class_independent.nll(data.test_x, data.test_y)
        else:
            ais = ais_rbm(model, independent, cfg.ais_chains, cfg.ais_steps, generator)
            log_z = np.array([ais.log_z])
            log_z_se = np.array([ais.log_z_se])
            ess = [ais.ess]
            log_px = (-model.energy(test_x).double().numpy() - ais.log_z)
        nll = float(-log_px.mean())
        # a log Z error shifts every test image alike; a class's share of the marginal
        # moves with its own log Z, bounded by the largest per-class error
        z_se = float(log_z_se.max()) if kind == "potts_cond" else float(log_z_se[0])
        out.update(test_nll_nats=nll,
                   test_nll_se=float(math.sqrt(log_px.var(ddof=1) / len(log_px) + z_se**2)),
                   ais_log_z=float(log_z.mean()) if kind != "potts_cond" else float(np.mean(log_z)),
                   ais_log_z_se=z_se, ais_min_ess=float(min(ess)))
        extra.update(ais_log_z_per_class=log_z.tolist(), ais_log_z_se_per_class=log_z_se.tolist(), ais_ess=ess)
        # --- pseudo-log-likelihood (the RBM's costs a free energy per site and level)
        n_pll = min(cfg.pll_images, len(test_x))
        if kind == "potts_rbm":
            n_pll = min(n_pll, 200)
        pll = model.pseudo_log_likelihood(test_x[:n_pll], test_y[:n_pll] if kind == "potts_cond" else None)
        out["pseudo_log_likelihood"] = float(pll.mean())
        out["pll_images"] = n_pll
        # --- samples from noise, coherence, autocorrelation
        if isinstance(model, PottsModel):
            samples, trace, _ = _potts_samples(model, cfg.samples, cfg.sample_sweeps, cfg.energy_chains, generator,
                                               labels)
        else:
            samples, trace = _rbm_samples(model, cfg.samples, cfg.sample_sweeps, cfg.energy_chains, generator)
        out["steps_to_coherence"] = steps_to_coherence(trace)
        k = min(cfg.iat_chains, cfg.samples)
        series = _energy_series(model, samples[:k], labels[:k].numpy() if labels is not None else None,
                                cfg.iat_sweeps, generator)
        out["energy_iat"] = integrated_autocorrelation_time(series)
        out["iat_reliable"] = bool(cfg.iat_sweeps >= 50 * out["energy_iat"])
        out["sample_energy"] = float(trace[-1])
        out["test_energy"] = float(model.energy(test_x, test_y if kind == "potts_cond" else None).mean())
        if isinstance(model, PottsModel):
            out["w_h"], out["w_v"] = float(model.coupling[0]), float(model.coupling[1])
    out["nll_gain_nats"] = independent_nll - out["test_nll_nats"]
    out["parameters"] = int(sum(t.numel() for t in model.parameters())) if model is not None else \
        int(independent.log_probs[0].size)
    out["beats_independent"] = bool(out["test_nll_nats"] + 2 * out["test_nll_se"] < independent_nll) \
        if kind != "independent" else False
    out["analysis_seconds"] = time.perf_counter() - started
    save_npz_atomic(samples_path, samples=samples.astype(np.uint8),
                    labels=(labels.numpy() if labels is not None else np.zeros(0, dtype=np.int64)),
                    energy_trace=trace)
    write_json_atomic(analysis_path, {"metrics": out, "extra": extra})
    log.info("%s: test NLL %.2f (independent %.2f), coherence %s sweeps, IAT %.1f", kind, out["test_nll_nats"],
             independent_nll, out.get("steps_to_coherence"), out.get("energy_iat", float("nan")))
    return out


# ----------------------------------------------------------------------------- quality

def evaluate_job(config: Mapping[str, Any], mnist4: str, model_path: str, analysis_path: str, samples_path: str,
                 reference_model: str, reference_stats: str, metrics_path: str, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Judge the samples with the reference classifier and write the run's metrics.json.
    ``config`` is the run's training hand-off (what the table shows beside the metrics)."""
    cfg = build(PottsRunConfig, config)
    params, seed = table_params(cfg), cfg.seed
    from rgbench.evaluation.quality import conditional_recognition, sample_quality
    from rgbench.evaluation.reference import load_reference_classifier

    started = time.perf_counter()
    torch_device = pick_device(device)
    clf = load_reference_classifier(reference_model, device=torch_device)
    analysis = read_json(analysis_path)
    arrays = load_npz(samples_path)
    grey = to_grey(arrays["samples"])
    quality = sample_quality(clf, grey, reference_stats)
    metrics = dict(analysis["metrics"])
    metrics.update(fid=quality["fid"], recognisable_fraction=quality["recognisable_fraction"],
                   class_entropy=quality["class_entropy"], inception_score=quality["inception_score"])
    if len(arrays["labels"]):
        metrics["conditional_recognition"] = conditional_recognition(clf, grey, arrays["labels"])
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    metrics["train_seconds"] = payload["train_seconds"]
    metrics["diverged"] = bool(payload.get("diverged", False))
    history = payload["history"]
    extra = dict(analysis["extra"])
    extra.update(class_histogram=quality["class_histogram"],
                 history=[{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history])
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    seconds = payload["train_seconds"] + metrics.get("analysis_seconds", 0.0) + time.perf_counter() - started
    state = payload.get("state_dict") or {}
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=run_id, params=params, seed=seed, metrics=metrics,
                  wall_seconds=seconds, device=describe_device(torch_device), extra=extra,
                  provenance=provenance(n_train=payload["n_train"], n_val=0, n_test=payload["n_test"],
                                        data_sha256=file_sha256(mnist4),
                                        n_params=sum(int(v.numel()) for v in state.values()),
                                        epochs_run=len(history)))
    return metrics
