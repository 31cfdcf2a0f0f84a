"""RG-Flow figures, drawn only from tables/rgflow.csv and each run's arrays.npz."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.io import load_npz
from rgbench.plotting.style import image_grid, new_figure, save, use_dpi


def _title(run_id: str) -> str:
    parts = dict(part.split("-", 1) for part in run_id.split("_"))
    return f"{parts.get('dataset', '?').upper()} / {parts.get('prior', '?')}"


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float32) / 255.0


def _show(ax, images: np.ndarray, ncols: int, title: str | None = None) -> None:
    ax.imshow(image_grid(_rgb(images), ncols), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def draw_samples(arrays: Sequence[Mapping[str, np.ndarray]], run_ids: Sequence[str], path: str | os.PathLike) -> None:
    """Per run: fixed-latent samples after each epoch (rows), then final T = 1 samples."""
    fig, axes = new_figure(ncols=2, nrows=len(run_ids), width=3.6, height=3.0)
    for row, (data, rid) in enumerate(zip(arrays, run_ids)):
        epochs = data["epoch_samples"]
        if epochs.ndim == 5 and len(epochs):
            per_row = epochs.shape[1]
            _show(axes[row, 0], epochs.reshape(-1, *epochs.shape[2:]), per_row,
                  f"{_title(rid)}: epochs 1-{len(epochs)} (rows)")
        else:
            axes[row, 0].set_axis_off()
        samples = data["samples"]
        _show(axes[row, 1], samples, int(np.ceil(np.sqrt(len(samples)))), f"{_title(rid)}: final, T = 1")
    save(fig, path)


def draw_temperature(arrays: Sequence[Mapping[str, np.ndarray]], run_ids: Sequence[str],
                     path: str | os.PathLike) -> None:
    """Mixed-temperature samples: T = 0.8 at even (row, col) sites, T = 0.2 elsewhere."""
    fig, axes = new_figure(ncols=len(run_ids), nrows=1, width=2.8, height=3.0)
    for col, (data, rid) in enumerate(zip(arrays, run_ids)):
        samples = data["temperature_samples"]
        _show(axes[0, col], samples, int(np.ceil(np.sqrt(len(samples)))), _title(rid))
    fig.suptitle("Mixed temperature: T = 0.8 (even sites), 0.2 (others)")
    save(fig, path)


def draw_receptive_fields(arrays: Sequence[Mapping[str, np.ndarray]], run_ids: Sequence[str],
                          path: str | os.PathLike) -> None:
    """E|dx/dz| of one latent per level (columns), per run (rows); the dot marks the latent."""
    levels = arrays[0]["receptive_fields"].shape[0]
    fig, axes = new_figure(ncols=levels, nrows=len(run_ids), width=2.2, height=2.2)
    for row, (data, rid) in enumerate(zip(arrays, run_ids)):
        for level in range(levels):
            ax = axes[row, level]
            ax.imshow(data["receptive_fields"][level], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            r, c = data["receptive_field_positions"][level]
            ax.plot([c], [r], marker="o", markersize=7, markerfacecolor="none", markeredgewidth=0.8, color="cyan")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if row == 0:
                ax.set_title(f"level {level}")
            if level == 0:
                ax.set_ylabel(_title(rid), fontsize=8)
    save(fig, path)


def draw_mixing(arrays: Sequence[Mapping[str, np.ndarray]], run_ids: Sequence[str], path: str | os.PathLike) -> None:
    """Per run: image A (coarse source), image B (fine source), and decodings of the mix
    at each cut level (latents of levels >= cut from A, the finer ones from B)."""
    fig, axes = new_figure(ncols=1, nrows=len(run_ids), width=5.0, height=2.6)
    for row, (data, rid) in enumerate(zip(arrays, run_ids)):
        a, b, mixes = data["mix_coarse"], data["mix_fine"], data["mixes"]
        columns = np.concatenate([a[:, None], b[:, None], mixes], axis=1)  # (pairs, 2 + cuts, H, W, C)
        cuts = ", ".join(str(c) for c in data["mix_cuts"])
        _show(axes[row, 0], columns.reshape(-1, *columns.shape[2:]), columns.shape[1],
              f"{_title(rid)}: A (coarse), B (fine), mixes at cut {cuts}")
    save(fig, path)


def draw_bpd(table: pd.DataFrame, arrays: Sequence[Mapping[str, np.ndarray]], run_ids: Sequence[str],
             path: str | os.PathLike) -> None:
    """Test BPD per run (bars, with the standard error over test images) and the per-epoch
    validation BPD curves."""
    fig, axes = new_figure(ncols=2, nrows=1)
    labels = [f"{d}\n{p}" for d, p in zip(table["dataset"], table["prior"])]
    axes[0, 0].bar(range(len(table)), table["test_bpd"], yerr=table.get("test_bpd_se"), capsize=3)
    for i, value in enumerate(table["test_bpd"]):
        axes[0, 0].text(i, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    axes[0, 0].set_xticks(range(len(table)), labels, fontsize=8)
    axes[0, 0].set_ylabel("test bits per dimension")
    for data, rid in zip(arrays, run_ids):
        curve = data["val_bpd"]
        axes[0, 1].plot(np.arange(1, len(curve) + 1), curve, marker="o", label=_title(rid))
    axes[0, 1].set_xlabel("epoch")
    axes[0, 1].set_ylabel("validation BPD")
    axes[0, 1].legend()
    save(fig, path)


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, array_paths: Sequence[str],
                outputs: Mapping[str, str]) -> None:
    """Every RG-Flow figure; ``config["run_ids"]`` names the runs the array files belong to."""
    use_dpi(config["dpi"])
    run_ids = list(config["run_ids"])
    if len(array_paths) != len(run_ids):
        raise ValueError(f"{len(array_paths)} array files for {len(run_ids)} runs")
    arrays = [load_npz(p) for p in array_paths]
    table = pd.read_csv(table_csv).set_index("run_id").loc[list(run_ids)].reset_index()
    draw_samples(arrays, run_ids, outputs["samples"])
    draw_temperature(arrays, run_ids, outputs["temperature"])
    draw_receptive_fields(arrays, run_ids, outputs["receptive_fields"])
    draw_mixing(arrays, run_ids, outputs["mixing"])
    draw_bpd(table, arrays, run_ids, outputs["bpd"])
