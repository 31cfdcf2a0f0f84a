"""Figure of the sampler_bench experiment: flips/ns against parallel chains per sampler."""

from __future__ import annotations

import os
from typing import Any, Mapping

import pandas as pd

from rgbench.plotting.style import new_figure, save, use_dpi


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, output: str | os.PathLike) -> None:
    """flips/ns (log scale) against chains for each sampler (the table's speed rows)."""
    use_dpi(config["dpi"])
    table = pd.read_csv(table_csv)
    if "check" in table.columns:
        table = table[table["check"] == "speed"]
    table = table.sort_values("chains")
    fig, axes = new_figure(1, 1, width=5.5, height=3.6)
    ax = axes[0, 0]
    for implementation, rows in table.groupby("implementation", sort=False):
        ax.plot(rows["chains"], rows["flips_per_ns"], marker="o", label=implementation)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parallel chains")
    ax.set_ylabel("flips per ns (median run)")
    ax.axhline(0.8, color="grey", linestyle=":", label="target 0.8 at 8,192 chains (2 cores)")
    ax.legend()
    save(fig, output)
