"""Figures of the GloNet depth study, drawn from tables/glonet.csv and each run's arrays.npz
(never from a model: figure rules do not retrain anything)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from rgbench.io import load_npz
from rgbench.plotting.style import new_figure, save, use_dpi

MODEL_ORDER = ("GloNet", "MLP", "ResMLP")


def load_runs(table_csv: str | os.PathLike, arrays: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """The main grid's rows, and each run's arrays keyed by run_id (its directory name)."""
    table = pd.read_csv(table_csv)
    if "grid" in table.columns:
        table = table[table["grid"] == "main"]
    by_run = {Path(path).parent.name: load_npz(path) for path in arrays}
    missing = sorted(set(table["run_id"]) - set(by_run))
    if missing:
        raise ValueError(f"arrays.npz missing for runs {missing}")
    return table.reset_index(drop=True), by_run


def models_in(table: pd.DataFrame) -> list[str]:
    present = set(table["model"])
    return [m for m in MODEL_ORDER if m in present] + sorted(present - set(MODEL_ORDER))


def seed_mean(runs: list[dict[str, np.ndarray]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread (std, 0 for one seed) of a per-run array across seeds; runs of
    unequal length (a diverged run stopped early) are NaN-padded."""
    length = max(len(r[key]) for r in runs)
    stacked = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        stacked[i, :len(r[key])] = r[key]
    with warnings.catch_warnings():  # an all-NaN column (every seed diverged) is expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stacked, axis=0), np.nan_to_num(np.nanstd(stacked, axis=0))


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def accuracy_vs_depth(table: pd.DataFrame, path: str | os.PathLike) -> None:
    fig, axes = new_figure(width=5.5, height=3.8)
    ax = axes[0, 0]
    for model in models_in(table):
        rows = table[table["model"] == model]
        stats = rows.groupby("depth")["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
        ax.errorbar(stats["depth"], 100 * stats["mean"], yerr=100 * stats["std"].fillna(0), marker="o",
                    capsize=3, label=model)
        diverged = rows[rows["diverged"].astype(bool)]
        if len(diverged):
            ax.scatter(diverged["depth"], 100 * diverged["test_accuracy"], marker="x", color="black", zorder=5,
                       label="diverged")
    depths = sorted(table["depth"].unique())
    if depths and depths[-1] / depths[0] >= 8:
        ax.set_xscale("log")
        ax.set_xticks(depths)
        ax.set_xticklabels([str(d) for d in depths])
        ax.minorticks_off()
    else:
        ax.set_xticks(depths)
    ax.set_xlabel("depth (Linear layers incl. head)")
    ax.set_ylabel("test accuracy (%)")
    seeds = table.groupby(["model", "depth"])["seed"].nunique().max()
    epochs = ", ".join(str(e) for e in sorted(table["epochs"].unique()))
    plural = "s" if seeds > 1 else ""
    ax.set_title(f"Accuracy vs depth (epochs: {epochs}; {seeds} seed{plural}; bars: std)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys())
    save(fig, path)


def learning_curves(table: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]], path: str | os.PathLike) -> None:
    depths = sorted(table["depth"].unique())
    ncols = min(len(depths), 4)
    nrows = int(np.ceil(len(depths) / ncols))
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=3.6, height=3.0, sharey=True)
    colours = {model: f"C{i}" for i, model in enumerate(models_in(table))}
    for index, depth in enumerate(depths):
        ax = axes.flat[index]
        for model in models_in(table):
            ids = table[(table["model"] == model) & (table["depth"] == depth)]["run_id"]
            runs = [arrays[i] for i in ids]
            if not runs:
                continue
            test, spread = seed_mean(runs, "test_accuracy")
            train, _ = seed_mean(runs, "train_accuracy")
            epochs = np.arange(1, len(test) + 1)
            ax.plot(epochs, 100 * test, marker="o", color=colours[model], label=f"{model} test")
            ax.fill_between(epochs, 100 * (test - spread), 100 * (test + spread), color=colours[model], alpha=0.2)
            ax.plot(epochs, 100 * train, ls="--", color=colours[model], alpha=0.7, label=f"{model} train")
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if index % ncols == 0:
            ax.set_ylabel("accuracy (%)")
    for ax in axes.flat[len(depths):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=7)
    save(fig, path)


def _deepest(table: pd.DataFrame, model: str) -> tuple[int | None, list[str]]:
    rows = table[table["model"] == model]
    if rows.empty:
        return None, []
    depth = int(rows["depth"].max())
    return depth, list(rows[rows["depth"] == depth]["run_id"])


def layer_usage(table: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]], path: str | os.PathLike) -> None:
    """GloNet and MLP at their deepest depth: normalised activation L1 and weight 1-norm."""
    fig, axes = new_figure(ncols=2, width=4.8, height=3.4)
    panels = (("layer_usage", "share of activation L1 norm"), ("weight_norm1", "weight matrix 1-norm"))
    drawn = False
    for column, (key, label) in enumerate(panels):
        ax = axes[0, column]
        for colour, model in enumerate(("GloNet", "MLP")):
            depth, ids = _deepest(table, model)
            if not ids:
                continue
            mean, spread = seed_mean([arrays[i] for i in ids], key)
            layers = np.arange(1, len(mean) + 1)
            ax.plot(layers, mean, marker=".", color=f"C{colour}", label=f"{model} (depth {depth})")
            ax.fill_between(layers, mean - spread, mean + spread, color=f"C{colour}", alpha=0.2)
            drawn = True
        ax.set_xlabel("hidden layer")
        ax.set_ylabel(label)
        if key == "weight_norm1":
            ax.set_yscale("log")
        ax.legend()
    if not drawn:
        _no_data(axes[0, 0], "no GloNet or MLP runs in this preset")
    fig.suptitle("Layer usage at the deepest depth (test set)")
    save(fig, path)


def early_exit(table: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]], path: str | os.PathLike) -> None:
    """GloNet's head applied to the sum of the first k layers, one line per depth."""
    fig, axes = new_figure(width=5.5, height=3.8)
    ax = axes[0, 0]
    rows = table[table["model"] == "GloNet"]
    for depth in sorted(rows["depth"].unique()):
        runs = [arrays[i] for i in rows[rows["depth"] == depth]["run_id"]]
        mean, spread = seed_mean(runs, "early_exit_accuracy")
        k = np.arange(1, len(mean) + 1)
        ax.plot(k, 100 * mean, marker="." if len(k) < 60 else None, label=f"depth {depth}")
        ax.fill_between(k, 100 * (mean - spread), 100 * (mean + spread), alpha=0.2)
    if rows.empty:
        _no_data(ax, "no GloNet runs in this preset")
    else:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
        ax.set_xlabel("k (hidden layers summed before the head)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("GloNet early exit: head on the sum of the first k layers")
        ax.legend()
    save(fig, path)


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, arrays: Sequence[str | os.PathLike],
                outputs: Mapping[str, str | os.PathLike]) -> None:
    use_dpi(config["dpi"])
    table, by_run = load_runs(table_csv, arrays)
    accuracy_vs_depth(table, outputs["accuracy_vs_depth"])
    learning_curves(table, by_run, outputs["learning_curves"])
    layer_usage(table, by_run, outputs["layer_usage"])
    early_exit(table, by_run, outputs["early_exit"])
