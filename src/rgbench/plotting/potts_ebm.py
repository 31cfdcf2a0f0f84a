"""Figures of the potts_ebm experiment, drawn from its table and saved arrays only."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.data.preprocess import level_values
from rgbench.io import load_npz
from rgbench.plotting.style import new_figure, save, show_grid, use_dpi


def _grey(levels: np.ndarray) -> np.ndarray:
    return level_values(4)[np.asarray(levels, dtype=np.int64)]


def samples_figure(sample_files: Sequence[str], models: Sequence[str], output: str | os.PathLike,
                   per_model: int = 20) -> None:
    """One row of samples (from uniform noise) per model; potts_cond shows two of each digit."""
    fig, axes = new_figure(1, len(models), width=9.0, height=0.65)
    for ax, path, model in zip(axes[:, 0], sample_files, models):
        arrays = load_npz(path)
        samples, labels = arrays["samples"], arrays["labels"]
        if len(labels):
            pick = np.concatenate([np.flatnonzero(labels == k)[:2] for k in range(10)])
            shown = samples[pick.reshape(10, -1).T.ravel()]
        else:
            shown = samples[:per_model]
        show_grid(ax, _grey(shown[:per_model]), ncols=per_model)
        ax.set_title(model, loc="left", fontsize=9)
    save(fig, output)


def training_figure(epoch_files: Sequence[str], models: Sequence[str], output: str | os.PathLike) -> None:
    """Left: mean energy of each update's data batch and negative chains; right: the
    persistent chains after each epoch."""
    fig, axes = new_figure(2, len(models), width=4.8, height=2.9)
    for row, (path, model) in enumerate(zip(epoch_files, models)):
        arrays = load_npz(path)
        ax = axes[row, 0]
        data, negative = arrays["step_data_energy"], arrays["step_model_energy"]
        smooth = max(1, len(data) // 50)  # running mean over ~2% of the updates
        kernel = np.ones(smooth) / smooth
        steps = np.arange(1, len(data) + 1)
        if len(data) >= smooth:
            ax.plot(steps[smooth - 1:], np.convolve(data, kernel, "valid"), label="data batch")
            ax.plot(steps[smooth - 1:], np.convolve(negative, kernel, "valid"), label="negative chains")
        ax.set_xlabel("parameter update")
        ax.set_ylabel("mean energy")
        ax.set_title(model)
        ax.legend()
        grids = arrays["epoch_samples"]  # (epochs, 16, 28, 28)
        if len(grids):
            show_grid(axes[row, 1], _grey(grids[:, :8].reshape(-1, 28, 28)), ncols=8,
                      title=f"{model}: chains after each epoch (rows)")
        else:
            axes[row, 1].set_axis_off()
    fig.tight_layout()
    save(fig, output)


def nll_figure(table_csv: str | os.PathLike, output: str | os.PathLike) -> None:
    """Test NLL per model (AIS, +-2 s.e.) against the exact independent-model NLL."""
    table = pd.read_csv(table_csv)
    summary = table.groupby("model", sort=False).agg(nll=("test_nll_nats", "mean"), se=("test_nll_se", "max"),
                                                    independent=("independent_nll_nats", "mean")).reset_index()
    fig, axes = new_figure(1, 1, width=5.5, height=3.4)
    ax = axes[0, 0]
    ax.bar(summary["model"], summary["nll"], yerr=2 * summary["se"].fillna(0), capsize=4, color="C0")
    ax.axhline(float(summary["independent"].iloc[0]), color="C3", linestyle="--", label="independent pixels (exact)")
    ax.set_ylabel("test NLL (nats / image)")
    ax.set_ylim(0, None)
    ax.legend(loc="lower right")
    save(fig, output)


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, sample_files: Sequence[str],
                epoch_files: Sequence[str], outputs: Mapping[str, str | os.PathLike]) -> None:
    """The three figures: samples per model, training curves of the trained models, NLL."""
    use_dpi(config["dpi"])
    models = list(config["models"])
    samples_figure(sample_files, models, outputs["samples"])
    training_figure(epoch_files, [m for m in models if m != "independent"], outputs["training"])
    nll_figure(table_csv, outputs["nll"])
