"""Traditional generative models of 4-level MNIST, set beside the energy-based models of
``potts_ebm`` (issue 25, seed 003's question): the train and evaluate jobs.

Models (each unconditional and class-conditional, as the RBMs are):

- ``made`` / ``made_cond``: a MADE (:mod:`rgbench.models.made`), exact likelihood,
  pixel-by-pixel sampling;
- ``vae`` / ``vae_cond``: a VAE with a categorical decoder (:mod:`rgbench.models.vae`),
  an importance-weighted (IWAE) upper bound on the NLL, one-pass sampling.

Jobs:

1. ``train_job`` (model, seed): Adam on the training split without its validation rows,
   through :func:`rgbench.training.fit` (checkpoint and resume). After every epoch the
   validation NLL (exact, or the IWAE bound) is measured and the best epoch's weights are
   kept: validation decides which weights the model file holds; the test set is not read.
2. ``evaluate_job`` (model, seed): the test NLL (once, with its kind: ``exact`` or
   ``bound``), samples at temperature 1 from the model's own prior (timed: wall and CPU
   seconds per 1,000 samples at the stated batch), the reference classifier's scores of
   them beside real test images rendered through the same levels
   (:mod:`rgbench.evaluation.samples`, exactly as the EBMs' chains are scored), and a
   memorisation check (:func:`memorisation`); writes the run's metrics.json.

Under the paper preset's probe (a ``probe`` block in a hand-off) training takes the
probe's steps through ``fit``, and each evaluation loop keeps the probe's batches in its
own measured block; its runs' provenance says ``probe``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from rgbench.config import build
from rgbench.data.preprocess import CLASSES, LevelData, load_levels
from rgbench.evaluation.energy import RaplMeter
from rgbench.evaluation.memorisation import memorisation
from rgbench.evaluation.stats import mean_se
from rgbench.evaluation.samples import SampleRun, ceiling_scores, relative_to_ceiling, save_sample_run, score_samples
from rgbench.io import atomic_path, file_sha256
from rgbench.models.made import MADE, MADEConfig
from rgbench.models.vae import VAE, VAEConfig
from rgbench.probe import capped, measured, probe_record_path, split_probe
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit, load_checkpoint

log = get_logger("generative")

EXPERIMENT = "generative"
MODELS = ("made", "made_cond", "vae", "vae_cond")
CONDITIONAL = frozenset({"made_cond", "vae_cond"})
FAMILY = "traditional"  # the generative table's family column (the EBMs are "ebm")
SAMPLER = "ancestral"  # both draw from their own prior in one ancestral pass; no chains
SHOWN_SAMPLES = 16  # samples kept for the figures, as the EBMs' SHOWN_CHAINS


# ----------------------------------------------------------------------------- configs

@dataclass
class MADETrainConfig:
    """The ``made`` training block."""

    hidden: list[int]  # units per hidden layer
    epochs: int  # the most epochs run; the best by validation NLL is kept
    batch_size: int
    lr: float  # Adam's (peak) step size
    lr_schedule: str  # "constant", or "cosine": decayed to 0 over the run's steps
    val_images: int  # validation images whose exact NLL picks the epoch (0: all)

    def __post_init__(self) -> None:
        _check_training(self)


@dataclass
class VAETrainConfig:
    """The ``vae`` training block."""

    hidden: int
    latents: int
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str
    val_images: int  # validation images whose IWAE bound picks the epoch (0: all)
    val_iwae_samples: int  # K of that bound (the evaluation's K may be larger)

    def __post_init__(self) -> None:
        _check_training(self)
        if self.val_iwae_samples < 1:
            raise ValueError(f"val_iwae_samples must be >= 1, got {self.val_iwae_samples}")


LR_SCHEDULES = ("constant", "cosine")


def _check_training(cfg: MADETrainConfig | VAETrainConfig) -> None:
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.val_images < 0 or not cfg.lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, val_images >= 0 and lr > 0, got {cfg}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")


@dataclass
class GenerativeRunConfig:
    """One run's training hand-off: the model, its seed, data limits and its training
    block (``made`` for made/made_cond, ``vae`` for vae/vae_cond)."""

    model: str
    seed: int
    train_limit: int  # 0: the whole train split
    test_limit: int  # 0: the whole test set
    training: dict[str, Any]

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")

    @property
    def kind(self) -> str:
        """``made`` or ``vae``: the architecture, whatever the conditioning."""
        return self.model.removesuffix("_cond")

    @property
    def conditional(self) -> bool:
        return self.model in CONDITIONAL

    def train_config(self) -> MADETrainConfig | VAETrainConfig:
        return build(MADETrainConfig if self.kind == "made" else VAETrainConfig, self.training)


@dataclass
class EvaluationConfig:
    """The evaluate job's settings (config ``generative.evaluation``)."""

    samples: int  # samples drawn, timed and scored
    sample_batch: int  # samples drawn at once (the timing's stated batch)
    iwae_samples: int  # K of the VAE's bound
    iwae_images: int  # validation and test images given the VAE's bound (0: all); exact NLLs use all
    nll_batch: int
    ceiling_images: int  # real test images scored as the samples are
    memorisation_images: int  # samples (and as many test images) compared with every training image

    def __post_init__(self) -> None:
        if self.samples < 2 or self.sample_batch < 1 or self.iwae_samples < 1 or self.nll_batch < 1:
            raise ValueError(f"need samples >= 2 (FID fits a covariance) and positive batches and K, got {self}")
        if self.iwae_images < 0 or self.ceiling_images < 2 or self.memorisation_images < 0:
            raise ValueError(f"need iwae_images >= 0, ceiling_images >= 2, memorisation_images >= 0, got {self}")


def table_params(cfg: GenerativeRunConfig) -> dict[str, Any]:
    """The parameters a table row shows next to its metrics."""
    train = cfg.train_config()
    row: dict[str, Any] = {"model": cfg.model, "family": FAMILY, "sampler": SAMPLER, "conditional": cfg.conditional,
                           "train_limit": cfg.train_limit, "epochs": train.epochs, "batch_size": train.batch_size,
                           "lr": train.lr, "lr_schedule": train.lr_schedule}
    if isinstance(train, MADETrainConfig):
        row["hidden"] = "-".join(map(str, train.hidden))  # a string: the table keeps scalars only
    else:
        row.update(hidden=str(train.hidden), latents=train.latents)
    return row


def build_model(cfg: GenerativeRunConfig) -> MADE | VAE:
    classes = CLASSES if cfg.conditional else 0
    train = cfg.train_config()
    if isinstance(train, MADETrainConfig):
        return MADE(MADEConfig(hidden=tuple(train.hidden), classes=classes))
    return VAE(VAEConfig(hidden=train.hidden, latents=train.latents, classes=classes))


def pixel_log_marginals(levels: np.ndarray, n_levels: int, alpha: float = 1.0) -> torch.Tensor:
    """(D, L) log frequencies of each pixel's levels in ``levels`` (N, H, W), add-``alpha``
    smoothed: the independent-pixel model."""
    flat = np.asarray(levels).reshape(len(levels), -1)
    counts = np.stack([(flat == level).sum(0) for level in range(n_levels)], axis=1) + alpha
    return torch.as_tensor(np.log(counts / counts.sum(1, keepdims=True)), dtype=torch.float32)


@torch.no_grad()
def start_from_independent(model: MADE | VAE, log_marginals: torch.Tensor) -> None:
    """Set the output layer's bias to the independent-pixel model's log probabilities, so
    training starts near that model instead of spending its first steps learning the
    background (measured: docs/decisions/generative.md)."""
    layer = model.output if isinstance(model, MADE) else model.decoder_out
    layer.bias.copy_(log_marginals.reshape(-1).to(layer.bias))


def load_trained(model_path: str | Path, device: torch.device | str = "cpu") -> tuple[MADE | VAE, dict[str, Any]]:
    """The model saved by :func:`train_job` (its best epoch's weights) and the payload."""
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    if payload.get("experiment") != EXPERIMENT:
        raise ValueError(f"{model_path} is not a model written by the generative train job")
    config = payload["config"]
    model: MADE | VAE = (MADE(MADEConfig(**config)) if payload["kind"] == "made" else VAE(VAEConfig(**config)))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


# ----------------------------------------------------------------------------- likelihood

def _labels_for(model: MADE | VAE, y: torch.Tensor) -> torch.Tensor | None:
    return y if model.conditional else None


@torch.no_grad()
def image_nll(model: MADE | VAE, x: np.ndarray, y: np.ndarray, batch_size: int, iwae_samples: int,
              generator: torch.Generator | None = None) -> np.ndarray:
    """Per-image NLL in nats: exact for a MADE, the IWAE bound with ``iwae_samples`` draws
    for a VAE (a stochastic upper bound; ``generator`` makes it repeatable)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[start:start + batch_size]).to(device)
        yb = _labels_for(model, torch.as_tensor(y[start:start + batch_size]).to(device))
        if isinstance(model, MADE):
            out.append(model.nll(xb, yb))
        else:
            out.append(model.iwae_bound(xb, yb, samples=iwae_samples, generator=generator))
    return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)


def nll_kind(model: MADE | VAE) -> str:
    """The generative table's ``nll_kind``: ``exact`` or ``bound`` (an upper bound)."""
    return "exact" if isinstance(model, MADE) else "bound"


# ----------------------------------------------------------------------------- sampling

def sample_labels(model: str, n: int) -> np.ndarray:
    """The intended digits of n samples: 0..9 in turn for conditional models (as the EBMs'
    clamped chains), else none."""
    return np.arange(n) % CLASSES if model in CONDITIONAL else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def draw_samples(model: MADE | VAE, labels: np.ndarray, n: int, batch_size: int,
                 generator: torch.Generator) -> tuple[np.ndarray, float, float, float | None]:
    """n samples (n, 28, 28) uint8 at temperature 1, ``batch_size`` at a time; returns them
    with the wall and CPU (process) seconds the draws took and their RAPL joules per
    sample (None where no counter is readable)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with RaplMeter() as meter:
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, n, batch_size):
            k = min(batch_size, n - start)
            lab = torch.as_tensor(labels[start:start + k]).to(device) if model.conditional else None
            out.append(model.sample(k, lab, generator=generator).cpu())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return torch.cat(out).numpy(), wall, cpu, (None if meter.joules is None else meter.joules / n)


# ----------------------------------------------------------------------------- train

def train_job(config: Mapping[str, Any], mnist4: str, model_path: str, device: str = "auto") -> dict[str, Any]:
    """Fit one model and save its best epoch (by validation NLL) to ``model_path``. The
    per-epoch checkpoint and the best epoch's weights (``best.pt``) live beside the model,
    not outputs, so a killed job resumes from them. A ``probe`` block trains the probe's
    steps and leaves its record beside the model."""
    settings, probe = split_probe(config)
    cfg = build(GenerativeRunConfig, settings)
    train = cfg.train_config()
    run_dir = Path(model_path).parent
    checkpoint_path, best_path = run_dir / "checkpoint.pt", run_dir / "best.pt"
    seed_everything(cfg.seed)
    torch_device = pick_device(device)
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    if len(data.train_x) < train.batch_size:
        raise ValueError(f"{cfg.model}: {len(data.train_x)} training images do not fill a batch of {train.batch_size}")
    model = build_model(cfg)
    start_from_independent(model, pixel_log_marginals(data.train_x, model.config.levels))
    model = model.to(torch_device)
    # fused: one kernel for every parameter's update (CPU and CUDA since torch 2.4), ~15% of a
    # training step on one CPU thread; the same update to float rounding
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)
    x_train = torch.as_tensor(data.train_x)
    y_train = torch.as_tensor(data.train_y)
    n_val = len(data.val_x) if not train.val_images else min(train.val_images, len(data.val_x))
    n_val = capped(probe, n_val, train.batch_size)
    val_x, val_y = data.val_x[:n_val], data.val_y[:n_val]
    fingerprint = params_fingerprint({"config": settings, "n_train": len(data.train_x), "n_val": len(data.val_x),
                                      "probe": probe is not None})
    log.info("%s seed %d: %d parameters, %d training / %d validation images, %d epochs of batch %d on %s",
             cfg.model, cfg.seed, model.parameter_count(), len(data.train_x), n_val, train.epochs, train.batch_size,
             describe_device(torch_device))

    def make_batches(epoch: int) -> TensorBatches:
        # drop_last: every step sees a full batch (the last partial one would weigh its few images more)
        return TensorBatches((x_train, y_train), train.batch_size,
                             order=epoch_permutation(len(x_train), cfg.seed, epoch), drop_last=True)

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = (t.to(torch_device) for t in batch)
        labels = _labels_for(model, y)
        per_image = model.nll(x, labels) if isinstance(model, MADE) else model.negative_elbo(x, labels)
        return per_image.mean()

    steps_per_epoch = len(make_batches(0))
    scheduler = None
    if train.lr_schedule == "cosine":
        # stepped after every optimiser step by fit, and saved in its checkpoints
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.epochs * steps_per_epoch)
    best = _BestEpoch(best_path, fingerprint)

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        # a generator per epoch: the VAE's validation bound is the same draw whether or not the run resumed
        generator = torch.Generator(torch_device).manual_seed(cfg.seed * 1_000 + epoch)
        k = getattr(train, "val_iwae_samples", 1)
        val_nll = float(image_nll(model, val_x, val_y, train.batch_size, k, generator).mean())
        model.train()
        best.offer(epoch, val_nll, model)
        return {"val_nll_nats": val_nll}

    result = fit(model, optimizer, make_batches, loss_fn, train.epochs, checkpoint_path=checkpoint_path,
                 on_epoch_end=on_epoch_end, scheduler=scheduler, description=f"generative {cfg.model}",
                 fingerprint=fingerprint, probe=probe)
    history = [{"epoch": h.epoch, "train_loss": h.train_loss, "seconds": h.seconds, "cpu_seconds": h.cpu_seconds,
                "diverged": h.diverged,
                **{k: v for k, v in h.extra.items() if isinstance(v, (int, float))}} for h in result.history]
    best_epoch = best.restore(model)
    steps = result.steps_run if probe is not None else len(history) * steps_per_epoch
    payload = {"experiment": EXPERIMENT, "kind": cfg.kind, "model": cfg.model, "run": asdict(cfg),
               "config": asdict(model.config), "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
               "best_epoch": best_epoch, "history": history, "diverged": result.diverged,
               "train_seconds": result.train_seconds,
               "train_cpu_seconds": result.train_cpu_seconds,
               "n_train": len(data.train_x), "n_val": n_val, "steps_run": steps, "probe": probe is not None}
    with atomic_path(model_path) as tmp:
        torch.save(payload, tmp)
    if probe is not None:
        probe.write(probe_record_path(run_dir, probe), device=describe_device(torch_device),
                    n_params=model.parameter_count())
    log.info("%s seed %d: %d epochs in %.1f s (%.1f CPU s), best epoch %s, validation NLL %s", cfg.model, cfg.seed,
             len(history), result.train_seconds, payload["train_cpu_seconds"], best_epoch,
             [round(h.get("val_nll_nats", float("nan")), 2) for h in history])
    return payload


class _BestEpoch:
    """The weights of the epoch with the lowest validation NLL so far, kept in a file beside
    the checkpoint so that a resumed run still knows them (a file of another run's
    parameters, by fingerprint, is ignored)."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path, self.fingerprint = path, fingerprint
        saved = load_checkpoint(path)
        self.saved = saved if saved is not None and saved.get("fingerprint") == fingerprint else None

    def offer(self, epoch: int, val_nll: float, model: nn.Module) -> None:
        # a record from a later epoch than this one belongs to a run that was killed before
        # its checkpoint: this epoch replaces it
        stale = self.saved is not None and self.saved["epoch"] >= epoch + 1
        if math.isfinite(val_nll) and (self.saved is None or stale or val_nll < self.saved["val_nll_nats"]):
            self.saved = {"fingerprint": self.fingerprint, "epoch": epoch + 1, "val_nll_nats": val_nll,
                          "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            with atomic_path(self.path) as tmp:
                torch.save(self.saved, tmp)

    def restore(self, model: nn.Module) -> int | None:
        """Load the best epoch's weights into ``model``; its epoch (1-based), or None when
        no epoch had a finite validation NLL (the model keeps its last weights)."""
        if self.saved is None:
            return None
        model.load_state_dict(self.saved["state_dict"])
        return int(self.saved["epoch"])


# ----------------------------------------------------------------------------- evaluate

def run_provenance(payload: Mapping[str, Any], data: LevelData, mnist4: str, n_params: int,
                   probe: bool = False) -> dict[str, Any]:
    """What a run used: the training record's data splits and length, the test split, the
    model's size; ``probe`` when the run, or the training of its model, was the probe's."""
    return provenance(n_train=payload["n_train"], n_val=payload["n_val"], n_test=len(data.test_x),
                      data_sha256=file_sha256(mnist4), n_params=n_params, epochs_run=len(payload["history"]),
                      steps_run=payload["steps_run"], probe=probe or bool(payload.get("probe")))


def evaluate_job(config: Mapping[str, Any], evaluation: Mapping[str, Any], mnist4: str, model_path: str,
                 reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Test NLL, samples and their scores, the memorisation check; the run's metrics.json
    and the samples the figures draw. A ``probe`` block in ``evaluation`` cuts each loop to
    the probe's batches and leaves the probe record beside metrics.json."""
    from rgbench.evaluation.reference import load_reference_classifier

    cfg = build(GenerativeRunConfig, config)
    evaluation, probe = split_probe(evaluation)
    ecfg = build(EvaluationConfig, evaluation)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    torch_device = pick_device(device)
    generator = torch.Generator(torch_device).manual_seed(10_000 + cfg.seed)
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    model, payload = load_trained(model_path, torch_device)
    if payload["model"] != cfg.model:
        raise ValueError(f"{model_path} holds a {payload['model']} model, the run asks for {cfg.model}")
    metrics: dict[str, Any] = {"nll_kind": nll_kind(model),
                               "nll_method": "exact" if isinstance(model, MADE) else f"iwae_k{ecfg.iwae_samples}"}

    # likelihood: validation (what the choices saw) and test (once, deciding nothing)
    with measured(probe, "nll"):
        for split, x, y in (("val", data.val_x, data.val_y), ("test", data.test_x, data.test_y)):
            limit = ecfg.iwae_images if isinstance(model, VAE) and ecfg.iwae_images else len(x)
            n = capped(probe, min(limit, len(x)), ecfg.nll_batch)
            values = image_nll(model, x[:n], y[:n], ecfg.nll_batch, ecfg.iwae_samples, generator)
            metrics[f"{split}_nll_nats"], metrics[f"{split}_nll_se"] = mean_se(values)
            metrics[f"{split}_nll_images"] = n
    if isinstance(model, VAE):  # the ELBO beside the bound: how much the K draws tighten it
        with measured(probe, "elbo"):
            n = metrics["test_nll_images"]
            metrics["test_elbo_nats"] = float(image_nll(model, data.test_x[:n], data.test_y[:n], ecfg.nll_batch, 1,
                                                        generator).mean())

    # samples, timed at the stated batch
    with measured(probe, "sampling"):
        n_samples = capped(probe, ecfg.samples, ecfg.sample_batch, minimum=2)
        labels = sample_labels(cfg.model, n_samples)
        images, wall, cpu, joules = draw_samples(model, labels, n_samples, ecfg.sample_batch, generator)
    metrics.update(sample_batch=ecfg.sample_batch, sample_threads=torch.get_num_threads())
    # one "sweep" is the whole ancestral pass: a sample is final when drawn (score_samples
    # turns it into the per-1,000-samples cost as it does the EBMs' sweeps)
    run = SampleRun(images, {1: images}, labels, wall, cpu, energy_joules_per_sample=joules)

    clf = load_reference_classifier(reference_model, device=torch_device)
    with measured(probe, "scoring"):
        scores, score_extra = score_samples(clf, run, labels, [1], reference_stats)
    metrics.update(scores)
    with measured(probe, "ceiling"):
        n_ceiling = capped(probe, min(ecfg.ceiling_images, len(data.test_x)), clf.batch_size, minimum=2)
        metrics.update(ceiling_scores(clf, data.test_x, data.test_y, n_ceiling, reference_stats))
    relative_to_ceiling(metrics)

    with measured(probe, "memorisation"):
        n_mem = capped(probe, min(ecfg.memorisation_images, n_samples, len(data.test_x)), ecfg.nll_batch)
        metrics.update(memorisation(images[:n_mem], data.test_x[:n_mem], data.train_x))

    metrics.update(train_seconds=payload["train_seconds"], train_cpu_seconds=payload["train_cpu_seconds"],
                   best_epoch=payload["best_epoch"], diverged=bool(payload["diverged"]),
                   n_params_active=(model.active_parameter_count() if isinstance(model, MADE)
                                    else model.parameter_count()))
    metrics["evaluation_seconds"] = time.perf_counter() - started
    save_sample_run(samples_path, run, [1], score_extra["digit_fraction_by_sweep"], SHOWN_SAMPLES)
    extra = {"class_histogram": score_extra["class_histogram"], "history": payload["history"]}
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=run_id, params=table_params(cfg), seed=cfg.seed,
                  metrics=metrics, wall_seconds=time.perf_counter() - started, device=describe_device(torch_device),
                  extra=extra, provenance=run_provenance(payload, data, mnist4, model.parameter_count(),
                                                         probe=probe is not None))
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device=describe_device(torch_device),
                    n_params=model.parameter_count())
    log.info("%s seed %d: test NLL %.2f (%s), recognisable %.3f, FID %.1f, %.2f CPU s per 1,000 samples", cfg.model,
             cfg.seed, metrics["test_nll_nats"], metrics["nll_method"], metrics["recognisable_fraction"] or 0.0,
             metrics["fid"] or float("nan"), metrics["cpu_seconds_per_1000_samples"] or float("nan"))
    return metrics
