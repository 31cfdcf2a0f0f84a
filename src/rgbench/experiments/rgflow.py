"""RG-Flow jobs: train one (dataset, prior) run, then evaluate it into metrics and arrays.

Protocol: a seeded validation split (``train.val_images`` images, ``train.split_seed``)
is held out of the training images; training never sees it. Every epoch ends with a
checkpoint (exact resume), the BPD of the whole validation split and a fixed-latent batch
of samples; learning rate and steps are chosen on that validation BPD (config.yaml says
what it showed). The test BPD is computed once, by the evaluation job, over the whole
test set (``eval.test_images: null``), with its standard error over images.

Training draws ``steps_per_epoch`` mini-batches per epoch from a per-epoch permutation of
the training split (one pass when ``steps_per_epoch`` is null), so a CPU preset can train
on a fixed budget of steps and a GPU preset on full epochs with the same code. A batch
whose activations do not fit goes through in ``train.micro_batch_size`` pieces (the same
step: gradients are accumulated, and the dequantisation noise is drawn in the same order).

A hand-off with a ``probe`` block (the paper preset's probe) trains a few steps, cuts
every evaluation loop to a few batches and marks its runs ``probe`` in their provenance.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from rgbench.config import build
from rgbench.data.celeba import random_flip
from rgbench.data.mnist import train_mask, validation_index
from rgbench.evaluation.stats import mean_se
from rgbench.io import file_sha256, load_npz, save_npz_atomic
from rgbench.models.rgflow import RGFlow, RGFlowConfig, bits_per_dim, count_parameters, dequantise, from_logit, to_logit
from rgbench.probe import capped, measured, probe_record_path, split_probe
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import epoch_permutation, fit, load_checkpoint, save_checkpoint

log = get_logger("rgflow")

EXPERIMENT = "rgflow"
MIX_TEMPERATURE = {"coarse": 0.8, "fine": 0.2}  # T at even (row, col) sites / elsewhere


# --------------------------------------------------------------------------- settings

@dataclass
class ModelSettings:
    couplings: list[int]
    hidden: int
    res_blocks: int
    mlp_layers: int


@dataclass
class TrainSettings:
    epochs: int
    steps_per_epoch: int | None
    batch_size: int
    micro_batch_size: int | None  # None: the whole batch in one forward/backward pass
    lr: float
    weight_decay: float
    grad_clip: float
    seed: int
    val_images: int
    split_seed: int
    samples_per_epoch: int


@dataclass
class EvalSettings:
    test_images: int | None
    batch_size: int
    samples: int
    rf_images: int
    mix_pairs: int


@dataclass
class TrainRun:
    """The training rule's hand-off: one (dataset, prior) run of the rgflow config."""

    dataset: str
    prior: str
    label: str
    model: ModelSettings
    train: TrainSettings

    def model_config(self) -> RGFlowConfig:
        spec = self.model
        return RGFlowConfig(couplings=list(spec.couplings), hidden=spec.hidden, res_blocks=spec.res_blocks,
                            mlp_layers=spec.mlp_layers, prior=self.prior)


@dataclass
class EvalRun(TrainRun):
    """The evaluation rule's hand-off: the training one plus ``eval``."""

    eval: EvalSettings


# --------------------------------------------------------------------------- data

@dataclass
class Splits:
    """Training images with the held-out validation rows, and the test images."""

    images: np.ndarray  # all training images (uint8 (N, H, W, 3)); the split is by index
    train_index: np.ndarray
    val_index: np.ndarray
    test: np.ndarray

    @property
    def val(self) -> np.ndarray:
        return self.images[self.val_index]


def load_images(data_npz: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    data = load_npz(data_npz)
    for key in ("train_images", "test_images"):
        images = data.get(key)
        if images is None or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{data_npz}: {key} must be uint8 (N, H, W, 3)")
    return data["train_images"], data["test_images"]


def load_splits(data_npz: str | os.PathLike, val_images: int, split_seed: int,
                test_images: int | None = None) -> Splits:
    """The seeded validation split of the training images; the first ``test_images`` test
    images (all when None)."""
    images, test = load_images(data_npz)
    if not 0 < val_images < len(images):
        raise ValueError(f"{data_npz}: val_images must be in [1, {len(images)}) (the training images), "
                         f"got {val_images}")
    val_index = validation_index(len(images), val_images, split_seed)
    train_index = np.flatnonzero(train_mask(len(images), val_index))
    return Splits(images, train_index, val_index, test if test_images is None else test[:test_images])


# --------------------------------------------------------------------------- model I/O

@torch.no_grad()
def image_nll(model: RGFlow, images: np.ndarray, batch_size: int, device: torch.device, seed: int) -> np.ndarray:
    """-log p(x) in nats per image, with a seeded dequantisation noise (fixed per image set)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = np.empty(len(images), dtype=np.float64)
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(images[start:start + batch_size])
        noise = torch.rand(batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2], generator=generator)
        y, ldj_logit = to_logit(dequantise(batch.to(device), noise.to(device)))
        out[start:start + len(batch)] = (-(model.log_prob(y) + ldj_logit)).double().cpu().numpy()
    return out


def evaluate_bpd(model: RGFlow, images: np.ndarray, batch_size: int, device: torch.device,
                 seed: int) -> tuple[float, float]:
    """BPD averaged over ``images`` and its standard error over images."""
    nll = image_nll(model, images, batch_size, device, seed)
    per_image = (nll / model.config.dims + math.log(256)) / math.log(2)
    _, se = mean_se(per_image)
    return bits_per_dim(float(nll.mean()), model.config.dims), se


@torch.no_grad()
def decode(model: RGFlow, z: torch.Tensor) -> np.ndarray:
    """Latents -> uint8 (N, L, L, C) images."""
    x, _ = model.inverse(z)
    return (from_logit(x) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode(model: RGFlow, images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images -> latents, dequantised at the bin centre (no noise)."""
    batch = torch.as_tensor(images).to(device)
    y, _ = to_logit(dequantise(batch, torch.full((batch.shape[0], 3, *batch.shape[1:3]), 0.5, device=device)))
    return model(y)[0]


# --------------------------------------------------------------------------- jobs

VAL_BATCH = 500  # images per forward pass of the per-epoch validation BPD


def train_job(config: Mapping[str, Any], data_npz: str | os.PathLike, model_path: str | os.PathLike,
              device: str = "auto") -> None:
    """Train one run (``config``: the rule's hand-off, see :class:`TrainRun`); writes
    ``model_path`` (weights, config, per-epoch history and samples). The per-epoch
    checkpoint lives beside it and is not an output, so a killed job resumes from it."""
    settings, probe = split_probe(config)
    run = build(TrainRun, settings)
    train = run.train
    checkpoint_path = Path(model_path).parent / "checkpoint.pt"
    seed_everything(train.seed)
    device = pick_device(device)
    model_config = run.model_config()
    model = RGFlow(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    splits = load_splits(data_npz, train.val_images, train.split_seed)
    n_train, batch_size = len(splits.train_index), train.batch_size
    per_epoch = n_train // batch_size if train.steps_per_epoch is None else train.steps_per_epoch
    if per_epoch < 1:
        raise ValueError(f"{run.dataset}: {n_train} training images do not fill a batch of {batch_size}")
    flip = run.dataset == "celeba"
    val_images = splits.val
    sample_z = model.sample_prior(train.samples_per_epoch, generator=torch.Generator(device).manual_seed(train.seed))
    log.info("rgflow %s/%s: %d parameters, %d training / %d validation images, %d steps/epoch of %d, %d epochs on %s",
             run.dataset, run.prior, count_parameters(model), n_train, len(val_images), per_epoch, batch_size,
             train.epochs, describe_device(device))

    images = torch.as_tensor(splits.images)
    train_index = torch.as_tensor(splits.train_index)

    def make_batches(epoch: int):
        order = train_index[torch.as_tensor(epoch_permutation(n_train, train.seed, epoch))]
        # Epochs longer than the data wrap around the permutation.
        need = per_epoch * batch_size
        order = order.repeat(math.ceil(need / len(order)))[:need]
        for step in range(per_epoch):
            yield images[order[step * batch_size:(step + 1) * batch_size]]

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        if flip:
            batch = random_flip(batch)
        y, ldj_logit = to_logit(dequantise(batch.to(device)))
        return -(model.log_prob(y) + ldj_logit).mean() / model_config.dims  # nats per dimension

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        val = val_images[:capped(probe, len(val_images), VAL_BATCH)]
        val_bpd, val_se = evaluate_bpd(model, val, VAL_BATCH, device, train.split_seed + 1)
        extra = {"val_bpd": val_bpd, "val_bpd_se": val_se, "samples": decode(model, sample_z)}
        model.train()
        return extra

    class _Batches:  # fit wants len() for its progress bar
        def __init__(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return per_epoch

        def __iter__(self):
            return make_batches(self.epoch)

    fingerprint = params_fingerprint({"config": dict(config), "n_train": n_train, "n_images": len(splits.images)})
    result = fit(model, optimizer, _Batches, loss_fn, train.epochs, checkpoint_path=checkpoint_path,
                 on_epoch_end=on_epoch_end, grad_clip=train.grad_clip, description=f"rgflow {run.dataset}/{run.prior}",
                 fingerprint=fingerprint, micro_batch_size=train.micro_batch_size, probe=probe)
    history = [vars(h) for h in result.history]
    # a probe stops after a few steps: count those, not whole epochs
    steps = result.steps_run if probe is not None else per_epoch * len(history)
    images_seen = steps * batch_size
    save_checkpoint(model_path, model=model.state_dict(), config=model_config.to_dict(), history=history,
                    dataset=run.dataset, prior=run.prior, diverged=result.diverged,
                    train_seconds=result.train_seconds, images_seen=images_seen, steps=steps,
                    batch_size=batch_size, images_per_second=images_seen / max(result.train_seconds, 1e-9),
                    n_train=n_train, n_val=len(val_images), device=describe_device(device))
    if probe is not None:
        probe.write(probe_record_path(Path(model_path).parent, probe), device=describe_device(device),
                    n_params=count_parameters(model))


def receptive_fields(model: RGFlow, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """E|dx/dz| over the batch ``z`` for one latent per level near the image centre.

    Returns (levels, L, L) maps (summed over the latent's channels and the image's
    channels, then normalised to max 1) and the (levels, 2) latent positions used.
    """
    size = model.config.image_size
    centre = size // 2
    maps, positions = [], []
    levels = model.levels.cpu().numpy()
    for level in range(model.config.n_levels):
        row = centre + (2**level if level < model.config.n_levels - 1 else 0)
        if levels[row, centre] != level:
            raise AssertionError(f"position ({row}, {centre}) is not a level-{level} latent")
        total = torch.zeros(size, size, device=z.device)
        for channel in range(model.config.channels):
            tangent = torch.zeros_like(z)
            tangent[:, channel, row, centre] = 1.0
            _, dx = torch.func.jvp(lambda latents: model.inverse(latents)[0], (z,), (tangent,))
            total += dx.detach().abs().mean(0).sum(0)
        maps.append((total / total.max()).cpu().numpy())
        positions.append((row, centre))
    return np.stack(maps).astype(np.float32), np.array(positions)


def mix_latents(model: RGFlow, z_coarse: torch.Tensor, z_fine: torch.Tensor, cut: int) -> torch.Tensor:
    """Latents of levels >= ``cut`` from ``z_coarse``, the finer ones from ``z_fine``."""
    coarse = (model.levels >= cut).to(z_coarse.dtype)
    return z_coarse * coarse + z_fine * (1 - coarse)


def temperature_map(model: RGFlow) -> torch.Tensor:
    """T = 0.8 at sites whose row and column are even, 0.2 elsewhere (the reference's mix)."""
    size = model.config.image_size
    even = torch.zeros(size, size, dtype=torch.bool, device=model.levels.device)
    even[::2, ::2] = True
    return torch.where(even, MIX_TEMPERATURE["coarse"], MIX_TEMPERATURE["fine"])


def evaluate_job(config: Mapping[str, Any], model_path: str | os.PathLike, data_npz: str | os.PathLike,
                 metrics_path: str | os.PathLike, arrays_path: str | os.PathLike, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """The test BPD (once, over the test set) and the figure arrays (drawn from
    validation images, so the test set serves nothing else) of one trained run."""
    started = time.perf_counter()
    settings, probe = split_probe(config)
    run = build(EvalRun, settings)
    spec, train = run.eval, run.train
    seed_everything(train.seed)
    device = pick_device(device)
    state = load_checkpoint(model_path, map_location=device)
    model_config = RGFlowConfig(**state["config"])
    model = RGFlow(model_config).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    splits = load_splits(data_npz, train.val_images, train.split_seed, spec.test_images)
    with measured(probe, "test_bpd"):
        test = splits.test[:capped(probe, len(splits.test), spec.batch_size)]
        test_bpd, test_bpd_se = evaluate_bpd(model, test, spec.batch_size, device, train.seed + 2)
    log.info("%s: test BPD %.4f +- %.4f on %d images", run_id, test_bpd, test_bpd_se, len(test))

    with measured(probe, "samples"):
        generator = torch.Generator(device).manual_seed(train.seed + 3)
        samples = decode(model, model.sample_prior(spec.samples, generator=generator))
        temperature_samples = decode(model, model.sample_prior(spec.samples, temperature_map(model),
                                                               generator=generator))

    val = splits.val
    rng = np.random.default_rng(train.seed)
    with measured(probe, "receptive_fields"):
        # one Jacobian-vector product per (level, channel) over all the images: a probe
        # keeps eval_batches images
        pick = rng.choice(len(val), size=min(len(val), spec.rf_images), replace=False)
        pick = pick[:capped(probe, len(pick), 1)]
        rf, rf_positions = receptive_fields(model, encode(model, val[pick], device))
    with measured(probe, "mixes"):
        pairs = min(spec.mix_pairs, len(val) // 2)
        idx = rng.choice(len(val), size=2 * pairs, replace=False)
        mix_a, mix_b = val[idx[:pairs]], val[idx[pairs:]]
        za, zb = encode(model, mix_a, device), encode(model, mix_b, device)
        cuts = list(range(1, model_config.n_levels))
        mixes = np.stack([decode(model, mix_latents(model, za, zb, cut)) for cut in cuts], axis=1)

    history = state["history"]
    val_curve = [h["extra"]["val_bpd"] for h in history]
    epoch_samples = np.stack([h["extra"]["samples"] for h in history]) if history else np.zeros((0,), np.uint8)
    save_npz_atomic(
        arrays_path,
        samples=samples,
        temperature_samples=temperature_samples,
        epoch_samples=epoch_samples,
        val_bpd=np.array(val_curve, dtype=np.float64),
        train_loss=np.array([h["train_loss"] for h in history], dtype=np.float64),
        receptive_fields=rf,
        receptive_field_positions=rf_positions,
        latent_levels=model.levels.cpu().numpy(),
        mix_coarse=mix_a,
        mix_fine=mix_b,
        mixes=mixes,
        mix_cuts=np.array(cuts),
    )
    params = {"dataset": run.dataset, "prior": run.prior, "label": run.label,
              "couplings": ",".join(map(str, model_config.couplings)), "hidden": model_config.hidden,
              "res_blocks": model_config.res_blocks, "mlp_layers": model_config.mlp_layers,
              "batch_size": train.batch_size, "lr": train.lr, "weight_decay": train.weight_decay,
              "steps_per_epoch": train.steps_per_epoch, "grad_clip": train.grad_clip}
    final_loss = history[-1]["train_loss"] if history else float("nan")
    n_params = count_parameters(model)
    metrics = {
        "params": n_params,
        "epochs": len(history),
        "steps": state["steps"],
        "train_images": state["images_seen"],
        "test_images": len(test),
        "test_bpd": finite_or_none(test_bpd),
        "test_bpd_se": finite_or_none(test_bpd_se),
        "val_bpd": finite_or_none(val_curve[-1]) if val_curve else None,
        "train_bpd_last_epoch": finite_or_none((final_loss + math.log(256)) / math.log(2)),
        "train_seconds": state["train_seconds"],
        "train_images_per_second": state["images_per_second"],
        "diverged": bool(state["diverged"]),
    }
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device=describe_device(device),
                    n_params=n_params)
    return write_metrics(
        metrics_path, experiment=EXPERIMENT, run_id=run_id, params=params, seed=train.seed, metrics=metrics,
        wall_seconds=state["train_seconds"] + time.perf_counter() - started, device=state["device"],
        provenance=provenance(n_train=len(splits.train_index), n_val=len(splits.val_index), n_test=len(test),
                              data_sha256=file_sha256(data_npz), n_params=n_params, epochs_run=len(history),
                              steps_run=state["steps"], probe=probe is not None),
        extra={"val_bpd_per_epoch": val_curve,
               "val_bpd_se_per_epoch": [h["extra"]["val_bpd_se"] for h in history],
               "train_loss_per_epoch": [h["train_loss"] for h in history],
               "evaluate_seconds": time.perf_counter() - started},
    )


def celeba_job(config: Mapping[str, Any], output_npz: str | os.PathLike) -> None:
    """The CelebA 32x32 cache from the user's directory (``config``: {dir, train_limit})."""
    from rgbench.data.celeba import build_cache

    build_cache(config["dir"], output_npz, limit=config["train_limit"] or None)
