"""RG-Flow jobs: train one (dataset, prior) run, then evaluate it into metrics and arrays.

Training draws ``steps_per_epoch`` mini-batches per epoch from a per-epoch permutation
of the training images (the whole set when ``steps_per_epoch`` is null), so a CPU preset
can train on a fixed budget of steps and a GPU preset on full epochs with the same code.
Every epoch ends with a checkpoint (exact resume), a quick validation BPD on a fixed
slice of the test set and a fixed-latent batch of samples.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from rgbench.data.celeba import random_flip
from rgbench.io import file_sha256, load_npz, save_npz_atomic
from rgbench.models.rgflow import (RGFlow, RGFlowConfig, bits_per_dim, count_parameters, dequantise, from_logit,
                                   nll_nats, to_logit)
from rgbench.results import finite_or_none, params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import epoch_permutation, fit, load_checkpoint, save_checkpoint

log = get_logger("rgflow")

EXPERIMENT = "rgflow"
MIX_TEMPERATURE = {"coarse": 0.8, "fine": 0.2}  # T at even (row, col) sites / elsewhere


def load_images(data_npz: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    data = load_npz(data_npz)
    for key in ("train_images", "test_images"):
        images = data.get(key)
        if images is None or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{data_npz}: {key} must be uint8 (N, H, W, 3)")
    return data["train_images"], data["test_images"]


def model_config(section: Mapping[str, Any], prior: str) -> RGFlowConfig:
    spec = section["model"]
    return RGFlowConfig(couplings=spec["couplings"], hidden=spec["hidden"], res_blocks=spec["res_blocks"],
                        mlp_layers=spec["mlp_layers"], prior=prior)


@torch.no_grad()
def evaluate_bpd(model: RGFlow, images: np.ndarray, batch_size: int, device: torch.device, seed: int) -> float:
    """Test BPD with a fixed dequantisation noise (seeded), averaged over all images."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(images[start:start + batch_size])
        noise = torch.rand(batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2], generator=generator)
        y, ldj_logit = to_logit(dequantise(batch.to(device), noise.to(device)))
        total += float((-(model.log_prob(y) + ldj_logit)).sum())
    return bits_per_dim(total / len(images), model.config.dims)


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


def train_job(section: Mapping[str, Any], data_npz: str | os.PathLike, model_path: str | os.PathLike,
              device: str = "auto") -> None:
    """Train one run (``section``: the rule's hand-off, with the run's dataset and prior);
    writes ``model_path`` (weights, config, per-epoch history and samples). The per-epoch
    checkpoint lives beside it and is not an output, so a killed job resumes from it."""
    dataset, prior = section["dataset"], section["prior"]
    checkpoint_path = Path(model_path).parent / "checkpoint.pt"
    train = section["train"]
    seed = int(train["seed"])
    seed_everything(seed)
    device = pick_device(device)
    config = model_config(section, prior)
    model = RGFlow(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])
    train_images, test_images = load_images(data_npz)
    batch_size, steps = int(train["batch_size"]), train["steps_per_epoch"]
    per_epoch = len(train_images) // batch_size if steps is None else int(steps)
    if per_epoch < 1:
        raise ValueError(f"{dataset}: {len(train_images)} training images do not fill a batch of {batch_size}")
    flip = dataset == "celeba"
    val_images = test_images[: int(train["val_images"])]
    sample_z = model.sample_prior(int(train["samples_per_epoch"]), generator=torch.Generator(device).manual_seed(seed))
    log.info("rgflow %s/%s: %d parameters, %d steps/epoch of %d images, %d epochs on %s", dataset, prior,
             count_parameters(model), per_epoch, batch_size, train["epochs"], describe_device(device))

    train_tensor = torch.as_tensor(train_images)

    def make_batches(epoch: int):
        order = torch.as_tensor(epoch_permutation(len(train_images), seed, epoch))
        # Epochs longer than the data wrap around the permutation.
        need = per_epoch * batch_size
        order = order.repeat(math.ceil(need / len(order)))[:need]
        for step in range(per_epoch):
            yield train_tensor[order[step * batch_size:(step + 1) * batch_size]]

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        if flip:
            batch = random_flip(batch)
        return nll_nats(model, batch.to(device)).mean() / config.dims  # nats per dimension

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        extra = {"val_bpd": evaluate_bpd(model, val_images, 256, device, seed + 1)}
        extra["samples"] = decode(model, sample_z)
        model.train()
        return extra

    class _Batches:  # fit wants len() for its progress bar
        def __init__(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return per_epoch

        def __iter__(self):
            return make_batches(self.epoch)

    fingerprint = params_fingerprint({"dataset": dataset, "prior": prior, "section": dict(section),
                                      "n_train": len(train_images)})
    result = fit(model, optimizer, _Batches, loss_fn, int(train["epochs"]), checkpoint_path=checkpoint_path,
                 on_epoch_end=on_epoch_end, grad_clip=train["grad_clip"], description=f"rgflow {dataset}/{prior}",
                 fingerprint=fingerprint)
    history = [vars(h) for h in result.history]
    images_seen = per_epoch * batch_size * len(history)
    save_checkpoint(model_path, model=model.state_dict(), config=config.to_dict(), history=history,
                    dataset=dataset, prior=prior, diverged=result.diverged, train_seconds=result.train_seconds,
                    images_seen=images_seen, steps=per_epoch * len(history), batch_size=batch_size,
                    images_per_second=images_seen / max(result.train_seconds, 1e-9),
                    device=describe_device(device))


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


def evaluate_job(section: Mapping[str, Any], model_path: str | os.PathLike, data_npz: str | os.PathLike,
                 metrics_path: str | os.PathLike, arrays_path: str | os.PathLike, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Test BPD and the figure arrays of one trained run."""
    started = time.perf_counter()
    spec = section["eval"]
    seed = int(section["train"]["seed"])
    seed_everything(seed)
    device = pick_device(device)
    state = load_checkpoint(model_path, map_location=device)
    config = RGFlowConfig(**state["config"])
    model = RGFlow(config).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    train_images, test_images = load_images(data_npz)
    limit = spec["test_images"]
    test = test_images if limit is None else test_images[: int(limit)]
    test_bpd = evaluate_bpd(model, test, int(spec["batch_size"]), device, seed + 2)
    log.info("%s: test BPD %.4f on %d images", run_id, test_bpd, len(test))

    generator = torch.Generator(device).manual_seed(seed + 3)
    n = int(spec["samples"])
    samples = decode(model, model.sample_prior(n, generator=generator))
    temperature_samples = decode(model, model.sample_prior(n, temperature_map(model), generator=generator))

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(test), size=min(len(test), int(spec["rf_images"])), replace=False)
    z = encode(model, test[pick], device)
    rf, rf_positions = receptive_fields(model, z)

    pairs = int(spec["mix_pairs"])
    idx = rng.choice(len(test), size=2 * pairs, replace=False)
    mix_a, mix_b = test[idx[:pairs]], test[idx[pairs:]]
    za, zb = encode(model, mix_a, device), encode(model, mix_b, device)
    cuts = list(range(1, config.n_levels))
    mixes = np.stack([decode(model, mix_latents(model, za, zb, cut)) for cut in cuts], axis=1)

    history = state["history"]
    epoch_samples = np.stack([h["extra"]["samples"] for h in history]) if history else np.zeros((0,), np.uint8)
    save_npz_atomic(
        arrays_path,
        samples=samples,
        temperature_samples=temperature_samples,
        epoch_samples=epoch_samples,
        val_bpd=np.array([h["extra"]["val_bpd"] for h in history], dtype=np.float64),
        train_loss=np.array([h["train_loss"] for h in history], dtype=np.float64),
        receptive_fields=rf,
        receptive_field_positions=rf_positions,
        latent_levels=model.levels.cpu().numpy(),
        mix_coarse=mix_a,
        mix_fine=mix_b,
        mixes=mixes,
        mix_cuts=np.array(cuts),
    )
    train = section["train"]
    params = {"dataset": state["dataset"], "prior": state["prior"], "label": section["label"],
              "couplings": ",".join(map(str, config.couplings)), "hidden": config.hidden,
              "res_blocks": config.res_blocks, "mlp_layers": config.mlp_layers, "batch_size": state["batch_size"],
              "lr": train["lr"], "weight_decay": train["weight_decay"], "steps_per_epoch": train["steps_per_epoch"]}
    final_loss = history[-1]["train_loss"] if history else float("nan")
    metrics = {
        "params": count_parameters(model),
        "epochs": len(history),
        "steps": state["steps"],
        "train_images": state["images_seen"],
        "test_images": len(test),
        "test_bpd": finite_or_none(test_bpd),
        "train_bpd_last_epoch": finite_or_none((final_loss + math.log(256)) / math.log(2)),
        "train_seconds": state["train_seconds"],
        "train_images_per_second": state["images_per_second"],
        "diverged": bool(state["diverged"]),
    }
    return write_metrics(
        metrics_path, experiment=EXPERIMENT, run_id=run_id, params=params, seed=seed, metrics=metrics,
        wall_seconds=state["train_seconds"] + time.perf_counter() - started, device=state["device"],
        provenance=provenance(n_train=len(train_images), n_val=int(train["val_images"]), n_test=len(test),
                              data_sha256=file_sha256(data_npz), n_params=count_parameters(model),
                              epochs_run=len(history), steps_run=state["steps"]),
        extra={"val_bpd_per_epoch": [h["extra"]["val_bpd"] for h in history],
               "train_loss_per_epoch": [h["train_loss"] for h in history],
               "evaluate_seconds": time.perf_counter() - started},
    )


def celeba_job(config: Mapping[str, Any], output_npz: str | os.PathLike) -> None:
    """The CelebA 32x32 cache from the user's directory (``config``: {dir, train_limit})."""
    from rgbench.data.celeba import build_cache

    build_cache(config["dir"], output_npz, limit=config["train_limit"] or None)
