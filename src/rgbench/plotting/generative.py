"""Figures of the generative comparison (seed 003's question), drawn from its table and
the traditional generators' saved samples only."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rgbench.evaluation.comparison import EBM_FAMILY, QUALITY_MEASURES, generator_means
from rgbench.plotting.potts_ebm import samples_figure
from rgbench.plotting.style import new_figure, save, use_dpi

MARKERS = {EBM_FAMILY: "o", "traditional": "s"}
CEILINGS = {"recognisable_fraction_vs_ceiling": None,  # already a share of the ceiling: the ceiling is 1
            "conditional_recognition": "ceiling_conditional_recognition"}


def quality_cost_figure(table_csv: str | os.PathLike, output: str | os.PathLike) -> None:
    """Quality against CPU seconds per sample (log axis), one point per generator and
    sampler (mean over seeds, error bars one seed sd), the real-image ceiling drawn: one
    panel per quality measure (conditional recognition: class-conditional models only)."""
    table = pd.read_csv(table_csv)
    means = generator_means(table)
    fig, axes = new_figure(len(QUALITY_MEASURES), 1, width=4.8, height=3.8)
    colours: dict[str, str] = {}
    for ax, (measure, words) in zip(axes[0], QUALITY_MEASURES.items()):
        shown = means[np.isfinite(means[measure]) & (means["cpu_seconds_per_1000_samples"] > 0)]
        for _, row in shown.iterrows():
            name = f"{row['model']} ({row['sampler']}{', 1 seed' if row['n_seeds'] == 1 else ''})"
            colour = colours.setdefault(name, f"C{len(colours) % 10}")
            ax.errorbar(row["cpu_seconds_per_1000_samples"] / 1000.0, row[measure],
                        yerr=row[f"{measure}_sd"] if np.isfinite(row[f"{measure}_sd"]) else None,
                        marker=MARKERS.get(row["family"], "^"), color=colour, linestyle="none", capsize=2,
                        label=name)
        ceiling_column = CEILINGS[measure]
        ceiling = 1.0 if ceiling_column is None else float(table[ceiling_column].mean())
        if np.isfinite(ceiling):
            ax.axhline(ceiling, color="0.3", linestyle=":", linewidth=1)
            ax.annotate("real-image ceiling", (0.02, ceiling), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=7, color="0.3")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("CPU seconds per sample")
        ax.set_ylabel(words.split(" (")[0])
        ax.set_title(words, fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    extra = [(h, lab) for h, lab in zip(*axes[0, -1].get_legend_handles_labels()) if lab not in labels]
    if extra:
        handles += [h for h, _ in extra]
        labels += [lab for _, lab in extra]
    fig.legend(handles, labels, loc="center left", ncol=1, fontsize=7, bbox_to_anchor=(1.0, 0.5),
               title="circles: EBMs (block Gibbs / THRML)\nsquares: traditional (ancestral)", title_fontsize=7)
    save(fig, output)


def figures_job(config: Mapping[str, Any], table_csv: str | os.PathLike, sample_files: Sequence[str],
                outputs: Mapping[str, str | os.PathLike]) -> None:
    """The quality-versus-cost figure and a row of samples per traditional generator."""
    use_dpi(config["dpi"])
    quality_cost_figure(table_csv, outputs["quality_cost"])
    samples_figure([(f"{model} (temperature 1, own prior)", path)
                    for model, path in zip(config["models"], sample_files)], outputs["samples"])
