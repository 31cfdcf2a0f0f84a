"""Reference classifier figure: its training curves (one per seed) and the FID scale it sets."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from rgbench.io import read_json
from rgbench.plotting.style import new_figure, save, use_dpi


def figures_job(config: Mapping[str, Any], metrics_files: Sequence[str | os.PathLike],
               output: str | os.PathLike) -> None:
    """Validation error per epoch of every seed, the test accuracy over seeds, and the FID
    scale of the yardstick (the first seed's classifier)."""
    use_dpi(config["dpi"])
    records = [read_json(path) for path in metrics_files]
    figure, axes = new_figure(ncols=2, width=5.2)
    ax = axes[0, 0]
    for record in records:
        history = record["extra"]["history"]
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [100 * (1 - h["extra"]["val_accuracy"]) for h in history], marker="o",
                label=f"validation, seed {record['seed']}")
    test = np.array([r["metrics"]["test_accuracy"] for r in records])
    spread = f" +- {100 * test.std(ddof=1):.2f}" if len(test) > 1 else ""
    ax.axhline(100 * (1 - test.mean()), color="0.3", linestyle="--",
               label=f"test (once, at the end): {100 * test.mean():.2f}{spread}% accuracy")
    ax.set(xlabel="epoch", ylabel="error (%)", title=f"Reference CNN, {len(records)} seed(s)")
    ax.legend()
    ax = axes[0, 1]
    metrics = records[0]["metrics"]
    names = ["floor:\ntrain vs test", "indep. pixels:\nmarginal", "indep. pixels:\nBernoulli"]
    values = [metrics["fid_floor"], metrics["fid_independent_marginal"], metrics["fid_independent_bernoulli"]]
    bars = ax.bar(names, values, color=["C2", "C3", "C4"])
    ax.bar_label(bars, fmt="%.2f")
    ax.set_yscale("log")
    ax.set(ylabel="FID (yardstick features)", title=f"FID scale, {metrics['fid_samples']} images per set")
    save(figure, output)
