"""Figures of the GloNet depth study, drawn from tables/glonet.csv, each run's arrays.npz
and the anchors of src/rgbench/claims/glonet.yaml (never from a model: figure rules do
not retrain anything).

Grids that share a depth convention and a width (e.g. the replication's recipe and its
LeCun-init variant) share a panel, one line style per grid; the official notebook's
grid gets its own."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from rgbench.io import load_npz
from rgbench.plotting.style import new_figure, save, use_dpi

MODEL_ORDER = ("GloNet", "MLP", "ResMLP")
GRID_ORDER = ("seed", "lecun", "notebook", "notebookhead", "notebookkaiming")  # the shipped grids first, then any other
MODEL_COLOURS = {"GloNet": "C0", "MLP": "C1", "ResMLP": "C2"}
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v")
DEPTH_LABELS = {"linear": "depth (Linear layers incl. head)", "hidden": "depth (hidden layers, notebook count)"}


def load_runs(table_csv: str | os.PathLike, arrays: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """The table's rows, and each run's arrays keyed by run_id (its directory name)."""
    table = pd.read_csv(table_csv)
    by_run = {Path(path).parent.name: load_npz(path) for path in arrays}
    missing = sorted(set(table["run_id"]) - set(by_run))
    if missing:
        raise ValueError(f"arrays.npz missing for runs {missing}")
    return table.reset_index(drop=True), by_run


def load_anchors(claims_yaml: str | os.PathLike | None) -> pd.DataFrame:
    """Published test accuracies per (grid, model, depth) from the claims file: the
    entries on ``test_accuracy`` whose ``where`` names all three and that compare with no
    baseline."""
    columns = ["grid", "model", "depth", "anchor", "epochs"]
    if claims_yaml is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for entry in yaml.safe_load(Path(claims_yaml).read_text()) or []:
        where = entry.get("where") or {}
        if entry.get("column") != "test_accuracy" or entry.get("baseline") or not {"grid", "model", "depth"} <= set(where):
            continue
        rows.append({"grid": where["grid"], "model": where["model"], "depth": where["depth"],
                     "anchor": entry["anchor_value"], "epochs": (entry.get("protocol") or {}).get("epochs")})
    return pd.DataFrame(rows, columns=columns)


def models_in(table: pd.DataFrame) -> list[str]:
    present = set(table["model"])
    return [m for m in MODEL_ORDER if m in present] + sorted(present - set(MODEL_ORDER))


def grids_in(table: pd.DataFrame) -> list[str]:
    present = set(table["grid"])
    return [g for g in GRID_ORDER if g in present] + sorted(present - set(GRID_ORDER))


def _figure(**kwargs: Any):
    # constrained layout keeps titles, labels and tick labels of a panel grid apart
    return new_figure(layout="constrained", **kwargs)


def _log_axis(axis: Any) -> None:
    """Integer tick labels on a log axis (no 2x10^0 minor labels)."""
    axis.set_major_formatter(FormatStrFormatter("%d"))
    axis.set_minor_formatter(NullFormatter())


def panels(table: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(title, grids) per panel: grids with the same depth convention and width together,
    in the table's order."""
    groups: dict[tuple, list[str]] = {}
    for grid in grids_in(table):
        first = table[table["grid"] == grid].iloc[0]
        groups.setdefault((first["depth_counts"], int(first["features"])), []).append(grid)
    return [(f"{', '.join(grids)} ({features} features)", grids) for (_, features), grids in groups.items()]


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


def _depth_axis(ax: Any, depths: Sequence[int], label: str) -> None:
    depths = sorted(int(d) for d in depths)
    if depths and depths[-1] / max(depths[0], 1) >= 8:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(depths)
    ax.set_xticklabels([str(d) for d in depths], fontsize=7)
    ax.set_xlabel(label)


def _legend(ax: Any, **kwargs: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), **kwargs)


def accuracy_vs_depth(table: pd.DataFrame, anchors: pd.DataFrame, path: str | os.PathLike) -> None:
    """Test accuracy against depth, mean +- sd over seeds, one panel per group of grids,
    published numbers as hollow markers."""
    groups = panels(table)
    fig, axes = _figure(ncols=len(groups), width=5.2, height=4.2, sharey=True)
    for ax, (title, grids) in zip(axes.flat, groups):
        for style, grid in enumerate(grids):
            rows = table[table["grid"] == grid]
            for model in models_in(rows):
                sub = rows[rows["model"] == model]
                stats = sub.groupby("depth")["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
                ax.errorbar(stats["depth"], 100 * stats["mean"], yerr=100 * stats["std"].fillna(0),
                            color=MODEL_COLOURS.get(model), ls=LINE_STYLES[style % 4], marker=MARKERS[style % 4],
                            ms=4, capsize=3, label=f"{model} ({grid}, {sub['init'].iloc[0]})")
                diverged = sub[sub["diverged"].astype(bool)]
                if len(diverged):
                    ax.scatter(diverged["depth"], 100 * diverged["test_accuracy"], marker="x", color="black",
                               zorder=5, label="diverged run")
            published = anchors[anchors["grid"] == grid]
            for model, sub in published.groupby("model"):
                epochs = sub["epochs"].iloc[0]
                ax.scatter(sub["depth"], 100 * sub["anchor"], s=60, facecolors="none",
                           edgecolors=MODEL_COLOURS.get(model, "grey"), marker="D", zorder=4,
                           label=f"{model} published ({grid}" + (f", {epochs} epochs)" if epochs else ")"))
        shown = table[table["grid"].isin(grids)]
        depths = set(shown["depth"]) | set(anchors[anchors["grid"].isin(grids)]["depth"])
        _depth_axis(ax, depths, DEPTH_LABELS.get(shown["depth_counts"].iloc[0], "depth"))
        seeds = shown.groupby(["grid", "model", "depth"])["seed"].nunique()
        epochs = "/".join(str(e) for e in sorted(shown["epochs"].unique()))
        n_train = "/".join(str(n) for n in sorted(shown["n_train"].unique()))
        ax.set_title(f"{title}\n{epochs} epoch(s) of {n_train} images; {seeds.min()}-{seeds.max()} seeds; bars: sd",
                     fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        _legend(ax, fontsize=6, loc="best")
    save(fig, path)


def learning_curves(table: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]], path: str | os.PathLike) -> None:
    """Validation accuracy against optimiser steps, one panel per (grid, model), one colour
    per depth (mean over seeds, band: sd)."""
    pairs = [(grid, model) for grid in grids_in(table) for model in models_in(table[table["grid"] == grid])]
    ncols = min(len(pairs), 4)
    fig, axes = _figure(ncols=ncols, nrows=-(-len(pairs) // ncols), width=3.6, height=2.9, sharey=True)
    for ax, (grid, model) in zip(axes.flat, pairs):
        rows = table[(table["grid"] == grid) & (table["model"] == model)]
        for index, depth in enumerate(sorted(rows["depth"].unique())):
            runs = [arrays[i] for i in rows[rows["depth"] == depth]["run_id"]]
            mean, spread = seed_mean(runs, "val_accuracy")
            steps, _ = seed_mean(runs, "val_step")
            colour = f"C{index % 10}"
            ax.plot(steps, 100 * mean, color=colour, label=f"depth {depth}")
            ax.fill_between(steps, 100 * (mean - spread), 100 * (mean + spread), color=colour, alpha=0.15)
        ax.set_title(f"{model}, grid {grid}", fontsize=8)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("validation accuracy (%)")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_axis_off()
    save(fig, path)


def layer_usage(table: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]], path: str | os.PathLike,
                fraction_column: str | None = None) -> None:
    """GloNet's layer usage: per-layer shares at every depth of each grid (ours: mean
    per-sample L1 of the layer's output; the replication's: induced 1-norm of its
    pre-activations), and the layers needed for the usage fraction against depth."""
    glonet = table[table["model"] == "GloNet"]
    grids = grids_in(glonet)
    fig, axes = _figure(ncols=3, nrows=max(len(grids), 1), width=3.9, height=3.1)
    if glonet.empty:
        _no_data(axes[0, 0], "no GloNet runs in this preset")
        save(fig, path)
        return
    fraction_column = fraction_column or next(c for c in table.columns if c.startswith("usage_layers_"))
    replication_column = fraction_column.replace("usage_layers_", "replication_l1_layers_")
    percent = fraction_column.rsplit("_", 1)[-1]
    for row, grid in enumerate(grids):
        rows = glonet[glonet["grid"] == grid]
        depths = sorted(rows["depth"].unique())
        for column, (key, label) in enumerate((("layer_usage", "share of output L1 (ours)"),
                                                ("replication_l1", "share of induced 1-norm (replication)"))):
            ax = axes[row, column]
            for index, depth in enumerate(depths):
                runs = [arrays[i] for i in rows[rows["depth"] == depth]["run_id"]]
                shares = [r[key] / np.nansum(r[key]) for r in runs]
                mean, _ = seed_mean([{key: s} for s in shares], key)
                ax.plot(np.arange(1, len(mean) + 1), mean, color=f"C{index % 10}", label=f"depth {depth}")
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
            ax.set_xlabel("hidden layer")
            ax.set_ylabel(label, fontsize=8)
            ax.set_title(f"GloNet, grid {grid}", fontsize=8)
            ax.legend(fontsize=6)
        ax = axes[row, 2]
        hidden = rows.groupby("depth")["hidden_layers"].first()
        for style, (name, label) in enumerate(((fraction_column, "ours"), (replication_column, "replication"))):
            if name not in rows:
                continue
            stats = rows.groupby("depth")[name].agg(["mean", "std"]).reset_index()
            ax.errorbar(stats["depth"], stats["mean"], yerr=stats["std"].fillna(0), marker=MARKERS[style],
                        ls=LINE_STYLES[style], capsize=3, label=label)
        ax.plot(hidden.index, hidden.values, color="grey", lw=0.8, label="all hidden layers")
        ax.axhspan(4, 8, color="grey", alpha=0.15, label="seed 002: 4-8 layers")
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        _depth_axis(ax, depths, DEPTH_LABELS.get(rows["depth_counts"].iloc[0], "depth"))
        ax.set_ylabel(f"layers carrying {percent}% of usage")
        ax.set_title(f"GloNet, grid {grid} (mean +- sd over seeds)", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle("GloNet layer usage on the test set after training", fontsize=10)
    save(fig, path)


def early_exit(table: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]], path: str | os.PathLike) -> None:
    """GloNet's head on the sum of the first k layers (test set), one line per depth, with
    the k chosen on validation marked."""
    glonet = table[table["model"] == "GloNet"]
    grids = grids_in(glonet) or ["none"]
    fig, axes = _figure(ncols=len(grids), width=4.6, height=3.8, sharey=True)
    for ax, grid in zip(axes.flat, grids):
        rows = glonet[glonet["grid"] == grid]
        if rows.empty:
            _no_data(ax, "no GloNet runs in this preset")
            continue
        for index, depth in enumerate(sorted(rows["depth"].unique())):
            sub = rows[rows["depth"] == depth]
            mean, spread = seed_mean([arrays[i] for i in sub["run_id"]], "test_exit_accuracy")
            k = np.arange(1, len(mean) + 1)
            colour = f"C{index % 10}"
            ax.plot(k, 100 * mean, color=colour, label=f"depth {depth}")
            ax.fill_between(k, 100 * (mean - spread), 100 * (mean + spread), color=colour, alpha=0.15)
            chosen = sub["best_exit_k"].dropna().astype(int)
            if len(chosen):
                ax.scatter(chosen, 100 * mean[chosen - 1], color=colour, marker="v", zorder=5)
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        ax.set_xlabel("k (hidden layers summed before the head)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"GloNet early exit, grid {grid}\n(triangles: k chosen on validation)", fontsize=8)
        ax.legend(fontsize=6)
    save(fig, path)


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, arrays: Sequence[str | os.PathLike],
                outputs: Mapping[str, str | os.PathLike], claims_yaml: str | os.PathLike | None = None) -> None:
    use_dpi(config["dpi"])
    table, by_run = load_runs(table_csv, arrays)
    accuracy_vs_depth(table, load_anchors(claims_yaml), outputs["accuracy_vs_depth"])
    learning_curves(table, by_run, outputs["learning_curves"])
    layer_usage(table, by_run, outputs["layer_usage"])
    early_exit(table, by_run, outputs["early_exit"])
