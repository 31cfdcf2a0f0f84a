"""Reference classifier figure: its training curve and the FID scale it sets."""

from __future__ import annotations

import os

from rgbench.io import read_json
from rgbench.plotting.style import new_figure, save


def plot_training(metrics_json: str | os.PathLike, output: str | os.PathLike) -> None:
    record = read_json(metrics_json)
    metrics, history = record["metrics"], record["extra"]["history"]
    epochs = [h["epoch"] for h in history]
    figure, axes = new_figure(ncols=2, width=5.2)
    ax = axes[0, 0]
    ax.plot(epochs, [100 * (1 - h["extra"]["val_accuracy"]) for h in history], marker="o", label="validation")
    ax.axhline(100 * (1 - metrics["test_accuracy"]), color="C1", linestyle="--",
               label=f"test (final): {100 * metrics['test_accuracy']:.2f}% accuracy")
    ax.axhline(0.7, color="0.5", linestyle=":", label="target: 0.7% error (99.3%)")
    ax.set(xlabel="epoch", ylabel="error (%)",
           title=f"Reference CNN ({metrics['train_seconds']:.0f} s wall-clock training)")
    ax.set_xticks(epochs)
    ax.legend()
    ax = axes[0, 1]
    names = ["floor:\ntrain vs test", "indep. pixels:\nmarginal", "indep. pixels:\nBernoulli"]
    values = [metrics["fid_floor"], metrics["fid_independent_marginal"], metrics["fid_independent_bernoulli"]]
    bars = ax.bar(names, values, color=["C2", "C3", "C4"])
    ax.bar_label(bars, fmt="%.2f")
    ax.set_yscale("log")
    ax.set(ylabel="FID (reference features)", title=f"FID scale, {metrics['fid_samples']} images per set")
    save(figure, output)
