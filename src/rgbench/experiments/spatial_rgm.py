"""Spatial RGM jobs: training (rule 1) and the three experiments (rule 2).

Training needs only MNIST; evaluation needs the trained model and the pipeline's
reference classifier, so the two are separate jobs and a model can be trained before
the classifier exists.

The experiments, each reduced to numbers:
1. Abstraction: ``test_accuracy`` of z2 (argmax) from hard z1 codes on the official
   test set; ``recon_mse`` per pixel with hard codes.
2. Concept-conditional generation: ``samples_per_digit`` draws of z1 from p(z1 | z2=d)
   per digit, decoded; ``conditional_recognition`` is the share the reference classifier
   labels as d; ``diversity`` the mean pairwise per-pixel L1 distance within a digit.
3. Locality: every z1 cell of ``locality_images`` test images is switched to
   ``locality_alternatives`` other codes; ``locality`` is the share of the total L1 image
   change that falls inside the cell's receptive window derived from the decoder's
   geometry. Global perturbation: switching z2 to another digit (z1 redrawn from the
   new prior) must change the classifier's label to that digit; ``global_switch_share``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rgbench.data.mnist import MnistSplits, load_splits
from rgbench.config import build
from rgbench.io import atomic_path, file_sha256, read_json, save_npz_atomic, write_json_atomic
from rgbench.models.spatial_rgm import (
    GRID,
    SpatialRGM,
    SpatialRGMConfig,
    loss_terms,
    one_hot_codes,
    parameter_count,
    receptive_windows,
    tau_at,
    window_mask,
)
from rgbench.results import params_fingerprint, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, seed_everything
from rgbench.training import TensorBatches, epoch_permutation, fit

log = get_logger("spatial_rgm")
EXPERIMENT = "spatial_rgm"
TEMPERATURE_SWEEP = (1.0, 0.7, 0.5, 0.3)


@dataclass
class SpatialTrainConfig:
    """The config's ``train`` block (epochs and seed come from the run)."""

    batch_size: int
    lr: float
    eval_batch_size: int
    lr_schedule: str  # "constant" or "cosine": decay to 0 over all steps (helps most in few epochs)

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")


@dataclass
class SpatialRunConfig:
    """The training job's hand-off: the run (epochs, seed), the data limit and the blocks."""

    epochs: int
    seed: int
    train_limit: int  # 0: the whole train split
    train: SpatialTrainConfig
    model: dict[str, Any]
    loss: dict[str, Any]
    gumbel: dict[str, Any]


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


def model_config_from(run: SpatialRunConfig | Mapping[str, Any]) -> SpatialRGMConfig:
    blocks = run if isinstance(run, Mapping) else {"model": run.model, "loss": run.loss, "gumbel": run.gumbel}
    return build(SpatialRGMConfig, {**blocks["model"], **blocks["loss"], **blocks["gumbel"]})


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).unsqueeze(1)


@torch.no_grad()
def hard_scores(model: SpatialRGM, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000,
                device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy of z2 and per-pixel MSE with hard (argmax) z1 codes; accuracy with soft codes too."""
    model.eval()
    correct = correct_soft = 0
    squared = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        y = labels[start:start + batch_size].to(device)
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
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
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
    """Train one Spatial RGM; write the model and training metrics (checkpoint beside them)."""
    started = time.perf_counter()
    run = build(SpatialRunConfig, config)
    tcfg, epochs, seed = run.train, run.epochs, run.seed
    mcfg = model_config_from(run)
    device = pick_device(device)
    seed_everything(seed)
    splits = load_splits(mnist28, limit_train=run.train_limit or None)
    x_train = to_tensor_images(splits.train_images)
    y_train = torch.from_numpy(splits.train_labels.astype(np.int64))
    x_val = to_tensor_images(splits.val_images)
    y_val = torch.from_numpy(splits.val_labels.astype(np.int64))
    if device.type == "cuda":
        x_train, y_train = x_train.to(device), y_train.to(device)

    model = SpatialRGM(mcfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    batches_per_epoch = int(np.ceil(len(x_train) / tcfg.batch_size))
    total_steps = max(epochs * batches_per_epoch, 1)
    state = {"step": 0}
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
                 if tcfg.lr_schedule == "cosine" else None)

    def make_batches(epoch: int) -> TensorBatches:
        state["step"] = epoch * batches_per_epoch  # the schedule is a function of position, so resume is exact
        order = epoch_permutation(len(x_train), seed, epoch)
        return TensorBatches((x_train, y_train), tcfg.batch_size, order=order)

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = (t.to(device) for t in batch)
        tau = tau_at(mcfg, state["step"] / total_steps)
        state["step"] += 1
        return loss_terms(model, x, y, tau)["loss"]

    def on_epoch_end(epoch: int) -> dict[str, Any]:
        scores = hard_scores(model, x_val, y_val, tcfg.eval_batch_size, device)
        model.train()
        return {"val_accuracy": scores["accuracy"], "val_accuracy_soft_codes": scores["accuracy_soft"],
                "val_recon_mse": scores["recon_mse"],
                "tau": tau_at(mcfg, (epoch + 1) / epochs)}

    params = {"train": asdict(tcfg), "model": asdict(mcfg), "train_limit": run.train_limit}
    result = fit(model, optimizer, make_batches, loss_fn, epochs,
                 checkpoint_path=Path(model_path).parent / "checkpoint.pt", on_epoch_end=on_epoch_end, scheduler=scheduler,
                 description=f"spatial_rgm seed {seed}", fingerprint=params_fingerprint(params))
    history = [asdict(h) if not isinstance(h, dict) else h for h in result.history]
    seconds = [h["seconds"] for h in history]
    record = {
        "epochs": epochs,
        "seed": seed,
        "parameters": parameter_count(model),
        "n_train": len(x_train),
        "n_val": len(x_val),
        "epochs_run": len(history),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else float("nan"),
        "diverged": result.diverged,
        "val_accuracy": history[-1]["extra"]["val_accuracy"] if history else float("nan"),
        "history": history,
        "params": params,
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - started,
    }
    save_model(model, model_path, extra={"seed": seed, "epochs": epochs})
    write_json_atomic(train_json, record)
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


@torch.no_grad()
def locality_scores(decode: Any, codes: torch.Tensor, num_codes: int, windows: torch.Tensor,
                    alternatives: int, seed: int = 0) -> dict[str, Any]:
    """Switch every cell of every image in ``codes`` (N, R, C) to other codes and measure where
    the decoded image changes.

    ``decode`` maps (B, num_codes, R, C) one-hot codes to (B, 1, H, W) images; ``windows`` is
    (R, C, 4) inclusive pixel bounds per cell. Returns ``locality`` (share of the summed L1
    change inside the cell's window), the same per cell (R, C), ``cell_share`` (share inside
    the cell's own H/R x W/C patch), and the per-cell mean change map for the centre cell.
    """
    rng = np.random.default_rng(seed)
    n, rows, cols = codes.shape
    inside = np.zeros((rows, cols))
    own = np.zeros((rows, cols))
    total = np.zeros((rows, cols))
    unchanged = 0
    perturbations = 0
    centre_change = None
    base_all = decode(one_hot_codes(codes, num_codes))[:, 0]
    height, width = base_all.shape[-2:]
    ph, pw = height // rows, width // cols
    masks = [[window_mask(windows[r, c], (height, width)) for c in range(cols)] for r in range(rows)]
    for k in range(n):
        batch, where = [], []
        for r in range(rows):
            for c in range(cols):
                for alt in alternative_codes(int(codes[k, r, c]), num_codes, alternatives, rng):
                    changed = codes[k].clone()
                    changed[r, c] = int(alt)
                    batch.append(changed)
                    where.append((r, c))
        images = decode(one_hot_codes(torch.stack(batch), num_codes))[:, 0]
        diffs = (images - base_all[k]).abs().double().cpu()
        for (r, c), diff in zip(where, diffs):
            change = float(diff.sum())
            perturbations += 1
            unchanged += change == 0.0
            total[r, c] += change
            inside[r, c] += float(diff[masks[r][c]].sum())
            own[r, c] += float(diff[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw].sum())
        if k == 0:
            centre = [i for i, w in enumerate(where) if w == (rows // 2, cols // 2)]
            centre_change = diffs[centre].mean(0).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        per_cell = np.where(total > 0, inside / total, np.nan)
    return {
        "locality": float(inside.sum() / total.sum()) if total.sum() > 0 else float("nan"),
        "cell_share": float(own.sum() / total.sum()) if total.sum() > 0 else float("nan"),
        "per_cell": per_cell,
        "per_cell_own": np.where(total > 0, own / np.maximum(total, 1e-300), np.nan),
        "mean_change": float(total.sum() / max(perturbations, 1)),
        "unchanged_share": unchanged / max(perturbations, 1),
        "perturbations": perturbations,
        "centre_change": centre_change,
    }


def window_area_share(windows: torch.Tensor, shape: tuple[int, int] = (28, 28)) -> float:
    """Mean share of the image a window covers: what ``locality`` would be for a uniform change."""
    areas = (windows[..., 1] - windows[..., 0] + 1) * (windows[..., 3] - windows[..., 2] + 1)
    return float(areas.double().mean() / (shape[0] * shape[1]))


# --- the evaluation job ---------------------------------------------------------------------
def evaluate_job(config: Mapping[str, Any], model_path: str | Path, train_json: str | Path, mnist28: str | Path,
                 reference_model: str | Path, metrics_path: str | Path, arrays_path: str | Path, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Run the three experiments on a trained model; write metrics.json and the figure arrays."""
    from rgbench.evaluation.quality import conditional_recognition
    from rgbench.evaluation.reference import load_reference_classifier

    started = time.perf_counter()
    evaluate_cfg = build(SpatialEvaluateConfig, config)
    ecfg = evaluate_cfg.evaluation
    device = pick_device(device)
    seed_everything(ecfg.seed)
    trained = read_json(train_json)
    model = load_model(model_path, device)
    clf = load_reference_classifier(reference_model, device=device)
    splits: MnistSplits = load_splits(mnist28, limit_train=1, limit_test=evaluate_cfg.test_limit or None)
    x_test = to_tensor_images(splits.test_images)
    y_test = torch.from_numpy(splits.test_labels.astype(np.int64))
    num_codes, classes = model.config.codes, model.config.classes
    generator = torch.Generator().manual_seed(ecfg.seed)

    # 1. abstraction
    scores = hard_scores(model, x_test, y_test, device=device)
    examples = x_test[:ecfg.figure_examples].to(device)
    encoded = model.encode_hard(examples)

    # 2. concept-conditional generation
    digits = torch.arange(classes).repeat_interleave(ecfg.samples_per_digit)
    _, samples = sample_from_prior(model, digits, ecfg.prior_temperature, generator)
    recognition = conditional_recognition(clf, samples.clamp(0, 1).numpy(), digits.numpy())
    per_digit_recognition = (clf.predict(samples.clamp(0, 1).numpy()) == digits.numpy()).reshape(
        classes, -1).mean(axis=1)
    diversity = [mean_pairwise_l1(samples[digits == d]) for d in range(classes)]
    # the same at other prior temperatures: how recognisability trades against diversity
    temperature_sweep = {}
    for temperature in TEMPERATURE_SWEEP:
        _, swept = sample_from_prior(model, digits, temperature, torch.Generator().manual_seed(ecfg.seed))
        temperature_sweep[str(temperature)] = {
            "conditional_recognition": conditional_recognition(clf, swept.clamp(0, 1).numpy(), digits.numpy()),
            "diversity": float(np.mean([mean_pairwise_l1(swept[digits == d]) for d in range(classes)]))}
    real_diversity = [mean_pairwise_l1(x_test[y_test == d][:ecfg.samples_per_digit, 0]) for d in range(classes)]

    # 3. locality, then the global (z2) perturbation
    windows = receptive_windows(model.dec1)
    with torch.no_grad():
        codes = model.encode_hard(x_test[:ecfg.locality_images].to(device))["codes"].cpu()
    local = locality_scores(lambda z: model.decode(z.to(device)).cpu(), codes, num_codes, windows,
                            ecfg.locality_alternatives, seed=ecfg.seed)
    n_global = min(ecfg.global_images, len(x_test))
    with torch.no_grad():
        predicted = model.encode_hard(x_test[:n_global].to(device))["z2_logits"].argmax(1).cpu()
    shift = torch.from_numpy(np.random.default_rng(ecfg.seed).integers(1, classes, size=n_global))
    targets = (predicted + shift) % classes
    _, switched = sample_from_prior(model, targets, ecfg.prior_temperature, generator)
    switched_labels = clf.predict(switched.clamp(0, 1).numpy())
    original_labels = clf.predict(splits.test_images[:n_global])
    global_share = float((switched_labels == targets.numpy()).mean())
    global_changed = float((switched_labels != original_labels).mean())

    metrics = {
        "epochs": int(trained["epochs"]),
        "test_accuracy": scores["accuracy"],
        "test_accuracy_soft_codes": scores["accuracy_soft"],
        "recon_mse": scores["recon_mse"],
        "locality": local["locality"],
        "locality_cell_patch": local["cell_share"],
        "locality_window_area": window_area_share(windows),
        "locality_unchanged_share": local["unchanged_share"],
        "conditional_recognition": recognition,
        "diversity": float(np.mean(diversity)),
        "real_diversity": float(np.mean(real_diversity)),
        "global_switch_share": global_share,
        "global_changed_share": global_changed,
        "seconds_per_epoch": float(trained["seconds_per_epoch"]),
        "train_seconds": float(trained["train_seconds"]),
        "val_accuracy": float(trained["val_accuracy"]),
        "prior_temperature": ecfg.prior_temperature,
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
        samples=samples.reshape(classes, ecfg.samples_per_digit, *samples.shape[1:])[:, :min(
            ecfg.figure_samples, ecfg.samples_per_digit)].numpy(),
        per_digit_recognition=per_digit_recognition,
        per_digit_diversity=np.asarray(diversity),
        windows=windows.numpy(),
        locality_per_cell=local["per_cell"],
        locality_per_cell_own=local["per_cell_own"],
        locality_image=x_test[0, 0].numpy(),
        locality_codes=codes[0].numpy(),
        locality_centre_change=local["centre_change"],
    )
    write_metrics(
        metrics_path,
        experiment=EXPERIMENT,
        run_id=run_id,
        params={"epochs": int(trained["epochs"]), "train_limit": trained["params"]["train_limit"],
                **trained["params"]["train"],
                **{f"model_{k}": v for k, v in trained["params"]["model"].items()},
                **{f"eval_{k}": v for k, v in asdict(ecfg).items()}, "test_limit": evaluate_cfg.test_limit},
        seed=int(trained["seed"]),
        metrics=metrics,
        wall_seconds=float(trained["wall_seconds"]) + eval_seconds,
        device=describe_device(device),
        provenance=provenance(n_train=trained["n_train"], n_val=trained["n_val"], n_test=len(x_test),
                              data_sha256=file_sha256(mnist28), n_params=trained["parameters"],
                              epochs_run=trained["epochs_run"]),
        extra={"history": trained["history"], "per_digit_recognition": per_digit_recognition.tolist(),
               "per_digit_diversity": diversity, "eval_seconds": eval_seconds,
               "prior_temperature_sweep": temperature_sweep,
               "locality_perturbations": local["perturbations"]},
    )
    log.info("test accuracy %.4f, recon mse %.4f, locality %.3f, conditional recognition %.3f",
             metrics["test_accuracy"], metrics["recon_mse"], metrics["locality"], recognition)
    return metrics
