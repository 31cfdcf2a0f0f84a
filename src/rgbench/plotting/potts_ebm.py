"""Figures of the potts_ebm experiment, drawn from its table and saved arrays only."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.data.preprocess import levels_to_grey
from rgbench.io import load_npz
from rgbench.plotting.style import new_figure, save, show_grid, use_dpi

PER_ROW = 20  # samples shown per row


def _shown(samples: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The first samples, or two of each digit 0..9 for a class-conditional model."""
    if len(labels):
        pick = np.concatenate([np.flatnonzero(labels == k)[:2] for k in range(10)])
        return samples[pick.reshape(10, -1).T.ravel()][:PER_ROW]
    return samples[:PER_ROW]


def samples_figure(rows: Sequence[tuple[str, str]], output: str | os.PathLike) -> None:
    """One row of final samples per (title, npz) in ``rows``; an
    npz with a ``mode`` array (RBMs) adds a row of the most probable images given the
    last hidden state."""
    shown = []
    for title, path in rows:
        arrays = load_npz(path)
        shown.append((title, _shown(arrays["samples"], arrays["labels"])))
        if len(arrays.get("mode", [])):
            shown.append((f"{title}, mode of p(v | h)", _shown(arrays["mode"], arrays["labels"])))
    fig, axes = new_figure(1, len(shown), width=9.0, height=0.68)
    for ax, (title, images) in zip(axes[:, 0], shown):
        show_grid(ax, levels_to_grey(images), ncols=PER_ROW)
        ax.set_title(title, loc="left", fontsize=8)
    save(fig, output)


def digits_figure(curves: Sequence[tuple[str, str, str]], output: str | os.PathLike) -> None:
    """Share of chains the reference classifier recognises (> 0.9; conditional models: as
    the intended digit) against sweeps from the chains' start, per (model, sampler, npz)."""
    fig, axes = new_figure(1, 1, width=6.0, height=3.8)
    ax = axes[0, 0]
    colours: dict[str, str] = {}
    for model, sampler, path in curves:
        arrays = load_npz(path)
        colour = colours.setdefault(model, f"C{len(colours)}")
        ax.plot(arrays["checkpoints"], arrays["digit_fraction"], marker="o", markersize=3, color=colour,
                linestyle="-" if sampler == "block" else "--", label=f"{model} ({sampler})")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("sweeps from the start")
    ax.set_ylabel("share of chains recognised")
    ax.legend(fontsize=7, ncol=2)
    save(fig, output)


def training_figure(epoch_files: Sequence[str], models: Sequence[str], output: str | os.PathLike) -> None:
    """Left: free-energy (RBMs) or energy (lattice models) gap between each update's data batch and
    the persistent chains (0 when the model's statistics match the data's); right: the
    first chains after each epoch."""
    fig, axes = new_figure(2, len(models), width=4.8, height=2.9)
    for row, (path, model) in enumerate(zip(epoch_files, models)):
        arrays = load_npz(path)
        ax = axes[row, 0]
        gap = arrays["step_gap"]
        smooth = max(1, len(gap) // 50)  # running mean over ~2% of the updates
        if len(gap) >= smooth:
            ax.plot(np.arange(smooth, len(gap) + 1), np.convolve(gap, np.ones(smooth) / smooth, "valid"))
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("parameter update")
        ax.set_ylabel("data - chain (free) energy")
        ax.set_title(model)
        chains = arrays["epoch_samples"]  # (epochs, 16, 28, 28)
        if len(chains):
            show_grid(axes[row, 1], levels_to_grey(chains[:, :8].reshape(-1, *chains.shape[2:])), ncols=8,
                      title=f"{model}: chains after each epoch (rows)")
        else:
            axes[row, 1].set_axis_off()
    fig.tight_layout()
    save(fig, output)


def nll_figure(table_csv: str | os.PathLike, output: str | os.PathLike) -> None:
    """Test NLL per model with an estimate (AIS; exact for independent; mean +- sd over
    seeds), the RBMs' conservative RAISE estimate, and each model's baseline (independent pixels, or the
    class mixture of them for the class-conditional models)."""
    table = pd.read_csv(table_csv)
    table = table[table["sampler"] == "block"] if "sampler" in table.columns else table
    agg = {"nll": ("test_nll_nats", "mean"), "sd": ("test_nll_nats", "std"), "baseline": ("baseline_nll_nats", "mean")}
    if "test_nll_raise_nats" in table.columns:
        agg["raise"] = ("test_nll_raise_nats", "mean")
        agg["raise_baseline"] = ("baseline_nll_raise_images_nats", "mean")
    summary = table.groupby("model", sort=False).agg(**agg).reset_index()
    summary = summary[summary["nll"].notna()].reset_index(drop=True)  # the DBNs have no likelihood estimate
    fig, axes = new_figure(1, 1, width=6.5, height=3.6)
    ax = axes[0, 0]
    x = np.arange(len(summary))
    ax.bar(x - 0.2, summary["nll"], width=0.4, yerr=summary["sd"].fillna(0), capsize=3, color="C0",
           label="model (AIS; exact for independent)")
    ax.bar(x + 0.2, summary["baseline"], width=0.4, color="C3", alpha=0.6, label="baseline (exact)")
    if "raise" in summary:
        ok = summary["raise"].notna()
        ax.scatter(x[ok] - 0.2, summary.loc[ok, "raise"], marker="v", color="k", zorder=3,
                   label="RAISE (conservative), test subset")
        ax.scatter(x[ok] + 0.2, summary.loc[ok, "raise_baseline"], marker="_", s=200, color="k", zorder=3,
                   label="baseline on that subset")
    ax.set_xticks(x, summary["model"])
    ax.set_ylabel("test NLL (nats / image)")
    ax.set_ylim(0, None)
    ax.legend(loc="lower right", fontsize=7)
    save(fig, output)


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, sample_files: Sequence[str],
                thrml_files: Sequence[str], epoch_files: Sequence[str], outputs: Mapping[str, str | os.PathLike]) -> None:
    """The four figures: samples per model and sampler, share of digits against sweeps,
    training curves of the trained models, NLL against the baselines."""
    use_dpi(config["dpi"])
    models, thrml_models = list(config["models"]), list(config["thrml_models"])
    rows = [(f"{m} (our block sampler)", path) for m, path in zip(models, sample_files)]
    rows += [(f"{m} (THRML)", path) for m, path in zip(thrml_models, thrml_files)]
    samples_figure(rows, outputs["samples"])
    curves = [(m, "block", path) for m, path in zip(models, sample_files) if m != "independent"]
    curves += [(m, "thrml", path) for m, path in zip(thrml_models, thrml_files)]
    digits_figure(curves, outputs["digits"])
    training_figure(epoch_files, list(config["trained_models"]), outputs["training"])
    nll_figure(table_csv, outputs["nll"])
