"""Spatial RGM jobs: training (one run of a grid: recipe, epochs, seed) and the experiments.

Training needs only MNIST; evaluation needs the trained model and the pipeline's
reference classifier, so the two are separate jobs and a model can be trained before
the classifier exists. Validation accuracy (hard codes, the held-out split of the
training data) is recorded after every epoch; the test set is read once, by evaluation.

The seed's experiments, each reduced to numbers that can fail:
1. Abstraction: ``test_accuracy`` of z2 (argmax) from hard z1 codes on the official
   test set; ``recon_mse`` per pixel with hard codes.
2. Concept-conditional generation ("z2 decides what, z1 how"): ``samples_per_digit``
   draws of z1 from p(z1 | z2=d) per digit, decoded; ``conditional_recognition`` is the
   share the reference classifier labels as d; ``diversity`` the mean pairwise per-pixel
   L1 distance within a digit and ``diversity_ratio`` that over the same for real test
   images of the digit.
3. Locality: every z1 cell of ``locality_images`` test images is switched to
   ``locality_alternatives`` other codes; ``locality`` is the share of the summed L1 image
   change that falls inside the cell's own 4x4-pixel patch, ``locality_random_patch`` the
   share an equally large patch at a uniformly random position receives (the chance
   level), and ``locality_window`` the share inside the decoder's receptive window (1 by
   construction of a convolutional decoder: a check, not a finding). Global perturbation:
   switching z2 to another digit with z1 redrawn from the new prior (as the seed does);
   ``global_switch_share`` is the share the classifier labels as the new digit.

A hand-off with a ``probe`` block (the paper preset's probe) trains a few steps, cuts
every evaluation loop to a few batches and marks the run ``probe`` in its provenance.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rgbench.config import build
from rgbench.data.mnist import MnistSplits, load_splits
from rgbench.io import atomic_path, file_sha256, read_json, save_npz_atomic, write_json_atomic
from rgbench.models.spatial_rgm import (
    GRID,
    GumbelConfig,
    SpatialLossConfig,
    SpatialRGM,
    SpatialRGMConfig,
    loss_terms,
    one_hot_codes,
    parameter_count,
    receptive_windows,
    window_mask,
)
from rgbench.probe import capped, measured, probe_record_path, split_probe
from rgbench.results import params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit

log = get_logger("spatial_rgm")
EXPERIMENT = "spatial_rgm"
# Prior temperatures at which samples are also drawn and scored, for the record only
# (recognisability against diversity); the claims use the configured temperature.
TEMPERATURE_SWEEP = (1.0, 0.7, 0.5, 0.3)
# Images per forward pass when scoring (speed only: the numbers do not depend on it).
EVAL_BATCH = 1000


@dataclass
class SpatialRunConfig:
    """The training job's hand-off: one (grid, epochs, seed) with the grid's recipe."""

    grid: str
    epochs: int
    seed: int
    train_limit: int  # 0: the whole train split
    batch_size: int
    lr: float  # Adam, constant (both published recipes)
    model: SpatialRGMConfig
    loss: SpatialLossConfig
    gumbel: GumbelConfig


@dataclass
class SpatialEvalConfig:
    """The config's ``evaluation`` block."""

    samples_per_digit: int
    prior_temperature: float  # p(z1 | z2) logits are divided by it before sampling
    locality_images: int
    locality_alternatives: int
    global_images: int
    figure_examples: int
    figure_samples: int  # per digit in the conditional-samples figure
    seed: int


@dataclass
class SpatialEvaluateConfig:
    """The evaluation job's hand-off."""

    test_limit: int  # 0: the whole test set
    evaluation: SpatialEvalConfig


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1] (torchvision's ToTensor scaling)."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).unsqueeze(1)


@torch.no_grad()
def hard_scores(model: SpatialRGM, images: torch.Tensor, labels: torch.Tensor,
                device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy of z2 and per-pixel MSE with hard (argmax) z1 codes; accuracy with soft codes too."""
    model.eval()
    correct = correct_soft = 0
    squared = 0.0
    for start in range(0, len(images), EVAL_BATCH):
        x = images[start:start + EVAL_BATCH].to(device)
        y = labels[start:start + EVAL_BATCH].to(device)
        out = model.encode_hard(x)
        correct += int((out["z2_logits"].argmax(1) == y).sum())
        squared += float(((out["recon"] - x) ** 2).sum())
        soft = F.softmax(model.z1_logits(x), dim=1)
        correct_soft += int((model.classify(soft).argmax(1) == y).sum())
    n = len(images)
    return {"accuracy": correct / n, "accuracy_soft": correct_soft / n,
            "recon_mse": squared / (n * images.shape[-1] * images.shape[-2])}


def save_model(model: SpatialRGM, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
    payload = {"config": asdict(model.config),
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
               "extra": dict(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> SpatialRGM:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = SpatialRGM(SpatialRGMConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def train_job(config: Mapping[str, Any], mnist28: str | Path, model_path: str | Path, train_json: str | Path,
              device: str = "auto") -> dict[str, Any]:
    """Train one Spatial RGM; write the model and training record (checkpoint beside them)."""
    started = time.perf_counter()
    settings, probe = split_probe(config)
    run = build(SpatialRunConfig, settings)
    epochs, seed = run.epochs, run.seed
    device = pick_device(device)
    seed_everything(seed)
    splits = load_splits(mnist28, limit_train=run.train_limit or None)
    # channels-last convolutions are about 17% faster on one CPU thread (measured), same maths
    x_train = to_tensor_images(splits.train_images).contiguous(memory_format=torch.channels_last)
    y_train = torch.from_numpy(splits.train_labels.astype(np.int64))
    x_val = to_tensor_images(splits.val_images)
    y_val = torch.from_numpy(splits.val_labels.astype(np.int64))
    if device.type == "cuda":
        x_train, y_train = x_train.to(device), y_train.to(device)

    model = SpatialRGM(run.model).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr)
    # tau and the warm-up weight are functions of the epoch, so a resumed run is exact
    state = {"tau": run.gumbel.tau(0, epochs), "vae_weight": run.loss.vae_weight(0), "step_losses": []}

    def make_batches(epoch: int) -> TensorBatches:
        state["tau"], state["vae_weight"] = run.gumbel.tau(epoch, epochs), run.loss.vae_weight(epoch)
        state["step_losses"] = []
        return TensorBatches((x_train, y_train), run.batch_size, order=epoch_permutation(len(x_train), seed, epoch))

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = (t.to(device) for t in batch)
        loss = loss_terms(model, x, y, state["tau"], run.loss, state["vae_weight"])["loss"]
        state["step_losses"].append(float(loss.detach()))
        return loss

    cpu_mark = [time.process_time()]

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        n_val = capped(probe, len(x_val), EVAL_BATCH)
        scores = hard_scores(model, x_val[:n_val], y_val[:n_val], device)
        model.train()
        # CPU time of the epoch (validation included), kept in the checkpointed history so
        # that a resumed job still reports the whole training's CPU time
        now = time.process_time()
        cpu_seconds, cpu_mark[0] = now - cpu_mark[0], now
        return {"cpu_seconds": cpu_seconds, "val_accuracy": scores["accuracy"],
                "val_accuracy_soft_codes": scores["accuracy_soft"],
                "val_recon_mse": scores["recon_mse"], "tau": state["tau"], "vae_weight": state["vae_weight"],
                # every batch's loss: the epoch mean's spread, and what a longer epoch would average
                "step_losses": list(state["step_losses"])}

    params = {"grid": run.grid, "batch_size": run.batch_size, "lr": run.lr, "train_limit": run.train_limit,
              "model": asdict(run.model), "loss": asdict(run.loss), "gumbel": asdict(run.gumbel)}
    fingerprint = params_fingerprint({**params, **({"probe": True} if probe is not None else {})})
    result = fit(model, optimizer, make_batches, loss_fn, epochs,
                 checkpoint_path=Path(model_path).parent / "checkpoint.pt", on_epoch_end=on_epoch_end,
                 description=f"spatial_rgm {run.grid} seed {seed}", fingerprint=fingerprint, probe=probe)
    history = [asdict(h) for h in result.history]
    seconds = [h["seconds"] for h in history]
    record = {
        "grid": run.grid,
        "epochs": epochs,
        "seed": seed,
        "parameters": parameter_count(model),
        "n_train": len(x_train),
        "n_val": len(x_val),
        "epochs_run": len(history),
        # a probe stops after a few steps, not whole epochs
        "steps_run": result.steps_run if probe is not None else len(history) * -(-len(x_train) // run.batch_size),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else float("nan"),
        "cpu_seconds": float(sum(h["extra"]["cpu_seconds"] for h in history)),
        "diverged": result.diverged,
        "val_accuracy": history[-1]["extra"]["val_accuracy"] if history else float("nan"),
        "history": history,
        "params": params,
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - started,
    }
    save_model(model, model_path, extra={"grid": run.grid, "seed": seed, "epochs": epochs})
    write_json_atomic(train_json, record)
    if probe is not None:
        probe.write(probe_record_path(Path(model_path).parent, probe), device=describe_device(device),
                    n_params=record["parameters"])
    log.info("trained %d parameters, %.1f s/epoch, val accuracy %.4f", record["parameters"],
             record["seconds_per_epoch"], record["val_accuracy"])
    return record


# --- experiment 2: concept-conditional generation --------------------------------------------
@torch.no_grad()
def sample_from_prior(model: SpatialRGM, digits: torch.Tensor, temperature: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw z1 ~ p(z1 | z2 = digit) cell by cell (hard codes) and decode; returns (codes, images)."""
    if temperature <= 0:
        raise ValueError(f"prior temperature must be positive, got {temperature}")
    device = next(model.parameters()).device
    z2 = F.one_hot(digits.long(), model.config.classes).float().to(device)
    logits = model.z1_prior_logits(z2) / temperature
    probs = F.softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, model.config.codes).cpu()
    codes = torch.multinomial(probs, 1, generator=generator).view(len(digits), GRID, GRID)
    images = model.decode(one_hot_codes(codes, model.config.codes).to(device))[:, 0].cpu()
    return codes, images


def mean_pairwise_l1(images: torch.Tensor) -> float:
    """Mean per-pixel absolute difference over all distinct pairs of (N, H, W) images."""
    flat = images.reshape(len(images), -1).double()
    if len(flat) < 2:
        return float("nan")
    distances = torch.cdist(flat, flat, p=1) / flat.shape[1]
    n = len(flat)
    return float(distances.sum() / (n * (n - 1)))


# --- experiment 3: locality ----------------------------------------------------------------
def alternative_codes(current: int, num_codes: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct codes other than ``current`` (all of them if fewer exist)."""
    others = np.array([c for c in range(num_codes) if c != current])
    return rng.choice(others, size=min(count, len(others)), replace=False)


def patch_coverage(shape: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """(H, W) float64: how many ``patch``-sized windows (of all positions inside the image)
    contain each pixel, divided by the number of positions. The share of a change map
    that a uniformly placed patch receives on average is ``(change * coverage).sum() /
    change.sum()``."""
    height, width = shape
    ph, pw = patch
    rows = torch.tensor([min(r, ph - 1, height - 1 - r, height - ph) + 1 for r in range(height)], dtype=torch.float64)
    cols = torch.tensor([min(c, pw - 1, width - 1 - c, width - pw) + 1 for c in range(width)], dtype=torch.float64)
    positions = (height - ph + 1) * (width - pw + 1)
    return torch.outer(rows, cols) / positions


@torch.no_grad()
def locality_scores(decode: Callable[[torch.Tensor], torch.Tensor], codes: torch.Tensor, num_codes: int,
                    windows: torch.Tensor, alternatives: int, seed: int = 0) -> dict[str, Any]:
    """Switch every cell of every image in ``codes`` (N, R, C) to other codes and measure where
    the decoded image changes.

    ``decode`` maps (B, num_codes, R, C) one-hot codes to (B, 1, H, W) images; ``windows`` is
    (R, C, 4) inclusive pixel bounds per cell. Every share is of the L1 change summed over
    all switches (so a switch that changes little weighs little):
    ``own_patch`` inside the cell's own (H/R x W/C) patch, ``random_patch`` inside an equally
    large patch at a uniformly random position, ``window`` inside the cell's window; per
    cell the same (``per_cell_own``, ``per_cell_window``), and the mean change map of the
    first image's centre cell.
    """
    rng = np.random.default_rng(seed)
    n, rows, cols = codes.shape
    base_all = decode(one_hot_codes(codes, num_codes))[:, 0].double()
    height, width = base_all.shape[-2:]
    ph, pw = height // rows, width // cols
    own_masks = torch.zeros(rows, cols, height, width, dtype=torch.float64)
    window_masks = torch.zeros(rows, cols, height, width, dtype=torch.float64)
    for r in range(rows):
        for c in range(cols):
            own_masks[r, c, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] = 1.0
            window_masks[r, c] = window_mask(windows[r, c], (height, width)).double()
    coverage = patch_coverage((height, width), (ph, pw))
    own = torch.zeros(rows, cols, dtype=torch.float64)
    inside = torch.zeros(rows, cols, dtype=torch.float64)
    total = torch.zeros(rows, cols, dtype=torch.float64)
    random_patch = 0.0
    unchanged = perturbations = 0
    centre_change = None
    for k in range(n):
        batch, where_r, where_c = [], [], []
        for r in range(rows):
            for c in range(cols):
                for alt in alternative_codes(int(codes[k, r, c]), num_codes, alternatives, rng):
                    changed = codes[k].clone()
                    changed[r, c] = int(alt)
                    batch.append(changed)
                    where_r.append(r)
                    where_c.append(c)
        diffs = (decode(one_hot_codes(torch.stack(batch), num_codes))[:, 0].double() - base_all[k]).abs()
        index_r, index_c = torch.tensor(where_r), torch.tensor(where_c)
        sums = diffs.sum(dim=(1, 2))
        flat = index_r * cols + index_c
        total.view(-1).index_add_(0, flat, sums)
        own.view(-1).index_add_(0, flat, (diffs * own_masks[index_r, index_c]).sum(dim=(1, 2)))
        inside.view(-1).index_add_(0, flat, (diffs * window_masks[index_r, index_c]).sum(dim=(1, 2)))
        random_patch += float((diffs * coverage).sum())
        perturbations += len(batch)
        unchanged += int((sums == 0).sum())
        if k == 0:
            centre = (index_r == rows // 2) & (index_c == cols // 2)
            centre_change = diffs[centre].mean(0).numpy()
    grand = float(total.sum())

    def share(part: torch.Tensor | float) -> float:
        return float(part.sum() if isinstance(part, torch.Tensor) else part) / grand if grand > 0 else float("nan")

    with np.errstate(invalid="ignore", divide="ignore"):
        per_cell_own = np.where(total > 0, (own / total).numpy(), np.nan)
        per_cell_window = np.where(total > 0, (inside / total).numpy(), np.nan)
    return {
        "own_patch": share(own),
        "random_patch": share(random_patch),
        "window": share(inside),
        "per_cell_own": per_cell_own,
        "per_cell_window": per_cell_window,
        "mean_change": grand / max(perturbations, 1),
        "unchanged_share": unchanged / max(perturbations, 1),
        "perturbations": perturbations,
        "centre_change": centre_change,
    }


# --- the evaluation job ---------------------------------------------------------------------
def evaluate_job(config: Mapping[str, Any], model_path: str | Path, train_json: str | Path, mnist28: str | Path,
                 reference_model: str | Path, metrics_path: str | Path, arrays_path: str | Path, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Run the seed's experiments on a trained model; write metrics.json and the figure arrays."""
    from rgbench.evaluation.quality import conditional_recognition
    from rgbench.evaluation.reference import load_reference_classifier

    started = time.perf_counter()
    settings, probe = split_probe(config)
    evaluate_cfg = build(SpatialEvaluateConfig, settings)
    ecfg = evaluate_cfg.evaluation
    device = pick_device(device)
    seed_everything(ecfg.seed)
    trained = read_json(train_json)
    model = load_model(model_path, device)
    clf = load_reference_classifier(reference_model, device=device)
    splits: MnistSplits = load_splits(mnist28, limit_train=1, limit_test=evaluate_cfg.test_limit or None)
    num_codes, classes = model.config.codes, model.config.classes
    generator = torch.Generator().manual_seed(ecfg.seed)
    # a probe keeps eval_batches batches of each loop (each block's cut is recorded)
    with measured(probe, "abstraction"):
        n_test = capped(probe, len(splits.test_labels), EVAL_BATCH)
        x_test = to_tensor_images(splits.test_images[:n_test])
        y_test = torch.from_numpy(splits.test_labels[:n_test].astype(np.int64))
        # 1. abstraction
        scores = hard_scores(model, x_test, y_test, device=device)
        examples = x_test[:ecfg.figure_examples].to(device)
        encoded = model.encode_hard(examples)

    # 2. concept-conditional generation
    with measured(probe, "generation"):
        per_digit = capped(probe, ecfg.samples_per_digit, EVAL_BATCH // classes)
        digits = torch.arange(classes).repeat_interleave(per_digit)
        _, samples = sample_from_prior(model, digits, ecfg.prior_temperature, generator)
        sample_labels = clf.predict(samples.clamp(0, 1).numpy())
        recognition = conditional_recognition(clf, samples.clamp(0, 1).numpy(), digits.numpy())
        per_digit_recognition = (sample_labels == digits.numpy()).reshape(classes, -1).mean(axis=1)
        diversity = [mean_pairwise_l1(samples[digits == d]) for d in range(classes)]
        real_diversity = [mean_pairwise_l1(x_test[y_test == d][:per_digit, 0]) for d in range(classes)]
        # the same at other prior temperatures: how recognisability trades against diversity
        temperature_sweep = {}
        for temperature in TEMPERATURE_SWEEP:
            _, swept = sample_from_prior(model, digits, temperature, torch.Generator().manual_seed(ecfg.seed))
            temperature_sweep[str(temperature)] = {
                "conditional_recognition": conditional_recognition(clf, swept.clamp(0, 1).numpy(), digits.numpy()),
                "diversity": float(np.mean([mean_pairwise_l1(swept[digits == d]) for d in range(classes)]))}

    # 3. locality (one batch of decodes per image), then the global (z2) perturbation
    with measured(probe, "locality"):
        windows = receptive_windows(model.dec1)
        n_local = capped(probe, min(ecfg.locality_images, len(splits.test_labels)), 1)
        codes = model.encode_hard(x_test[:n_local].to(device))["codes"].cpu()
        local = locality_scores(lambda z: model.decode(z.to(device)).cpu(), codes, num_codes, windows,
                                ecfg.locality_alternatives, seed=ecfg.seed)
    with measured(probe, "global"):
        n_global = capped(probe, min(ecfg.global_images, len(splits.test_labels)), EVAL_BATCH)
        predicted = model.encode_hard(x_test[:n_global].to(device))["z2_logits"].argmax(1).cpu()
        shift = torch.from_numpy(np.random.default_rng(ecfg.seed).integers(1, classes, size=n_global))
        targets = (predicted + shift) % classes
        _, switched = sample_from_prior(model, targets, ecfg.prior_temperature, generator)
        switched_labels = clf.predict(switched.clamp(0, 1).numpy())
        original_labels = clf.predict(splits.test_images[:n_global])

    history = trained["history"]
    metrics = {
        "epochs": int(trained["epochs"]),
        "test_accuracy": scores["accuracy"],
        "test_accuracy_soft_codes": scores["accuracy_soft"],
        "recon_mse": scores["recon_mse"],
        "locality": local["own_patch"],
        "locality_random_patch": local["random_patch"],
        "locality_window": local["window"],
        "locality_unchanged_share": local["unchanged_share"],
        "conditional_recognition": recognition,
        "diversity": float(np.mean(diversity)),
        "real_diversity": float(np.mean(real_diversity)),
        "diversity_ratio": float(np.mean(diversity) / np.mean(real_diversity)),
        "global_switch_share": float((switched_labels == targets.numpy()).mean()),
        "global_changed_share": float((switched_labels != original_labels).mean()),
        "val_accuracy": float(trained["val_accuracy"]),
        **{f"train_loss_epoch_{h['epoch']}": float(h["train_loss"]) for h in history},
        "seconds_per_epoch": float(trained["seconds_per_epoch"]),
        "train_seconds": float(trained["train_seconds"]),
        "train_cpu_seconds": float(trained["cpu_seconds"]),
        "diverged": bool(trained["diverged"]),
    }
    eval_seconds = time.perf_counter() - started
    save_npz_atomic(
        arrays_path,
        example_images=examples[:, 0].cpu().numpy(),
        example_labels=y_test[:ecfg.figure_examples].numpy(),
        example_codes=encoded["codes"].cpu().numpy().astype(np.int64),
        example_z2=F.softmax(encoded["z2_logits"], dim=1).cpu().numpy(),
        example_recon=encoded["recon"][:, 0].cpu().numpy(),
        samples=samples.reshape(classes, per_digit, *samples.shape[1:])[:, :min(ecfg.figure_samples,
                                                                                  per_digit)].numpy(),
        per_digit_recognition=per_digit_recognition,
        per_digit_diversity=np.asarray(diversity),
        windows=windows.numpy(),
        locality_per_cell_own=local["per_cell_own"],
        locality_per_cell_window=local["per_cell_window"],
        locality_image=x_test[0, 0].numpy(),
        locality_codes=codes[0].numpy(),
        locality_centre_change=local["centre_change"],
    )
    params = trained["params"]
    write_metrics(
        metrics_path,
        experiment=EXPERIMENT,
        run_id=run_id,
        params={"grid": params["grid"], "epochs": int(trained["epochs"]), "train_limit": params["train_limit"],
                "batch_size": params["batch_size"], "lr": params["lr"], **params["loss"], **params["gumbel"],
                **{f"model_{k}": v for k, v in params["model"].items()},
                **{f"eval_{k}": v for k, v in asdict(ecfg).items()}, "test_limit": evaluate_cfg.test_limit},
        seed=int(trained["seed"]),
        metrics=metrics,
        wall_seconds=float(trained["wall_seconds"]) + eval_seconds,
        device=describe_device(device),
        provenance=provenance(n_train=trained["n_train"], n_val=trained["n_val"], n_test=len(x_test),
                              data_sha256=file_sha256(mnist28), n_params=trained["parameters"],
                              epochs_run=trained["epochs_run"], steps_run=trained["steps_run"],
                              probe=probe is not None),
        extra={"history": history, "per_digit_recognition": per_digit_recognition.tolist(),
               "per_digit_diversity": diversity, "eval_seconds": eval_seconds,
               "prior_temperature_sweep": temperature_sweep, "locality_perturbations": local["perturbations"]},
    )
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device=describe_device(device),
                    n_params=trained["parameters"])
    log.info("test accuracy %.4f, recon mse %.4f, locality %.3f (random patch %.3f), conditional recognition %.3f",
             metrics["test_accuracy"], metrics["recon_mse"], metrics["locality"], metrics["locality_random_patch"],
             recognition)
    return metrics
