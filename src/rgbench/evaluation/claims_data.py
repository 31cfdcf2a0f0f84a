"""What the claims read: the experiment tables (without probe runs) and measures derived
from each run's metrics.json where a table has no column for them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from rgbench.evaluation.stats import log_linear_r2
from rgbench.io import read_json


def _curve_mean(record: Mapping[str, Any]) -> float | None:
    """Mean validation accuracy over the learning curve: convergence with no level to choose."""
    values = [v for v in record.get("extra", {}).get("curves", {}).get("val_accuracy", []) if v is not None]
    return float(np.mean(values)) if values else None


# name -> (what it is, how one run's metrics.json gives it)
DERIVED_COLUMNS: dict[str, tuple[str, Callable[[Mapping[str, Any]], float | None]]] = {
    "val_curve_mean": ("mean validation accuracy over the run's learning curve, metrics.json extra.curves",
                       _curve_mean),
    "replication_l1_decay_r2": ("signed R^2 of log(replication L1 norm per hidden layer) against the layer index, "
                                "metrics.json extra.replication_l1",
                                lambda record: log_linear_r2(record.get("extra", {}).get("replication_l1") or [])),
}


def with_derived_column(table: pd.DataFrame, column: str, runs_dir: str | os.PathLike | None) -> pd.DataFrame:
    """``table`` plus a :data:`DERIVED_COLUMNS` column the table lacks, from the runs' metrics.json."""
    if column in table.columns or column not in DERIVED_COLUMNS or runs_dir is None or "run_id" not in table:
        return table
    paths = [Path(runs_dir) / str(run_id) / "metrics.json" for run_id in table["run_id"]]
    if not all(path.exists() for path in paths):
        return table
    values = [DERIVED_COLUMNS[column][1](read_json(path)) for path in paths]
    return table.assign(**{column: pd.to_numeric(pd.Series(values, index=table.index, dtype=object))})


def read_table(path: str | os.PathLike | None) -> pd.DataFrame | None:
    """A table without its probe runs (they judge nothing), or None when it is missing or has
    no rows (an experiment with no runs yet)."""
    try:
        table = pd.read_csv(path) if path is not None and Path(path).exists() else None
    except pd.errors.EmptyDataError:
        return None
    if table is not None and "probe" in table.columns:
        table = table[~table["probe"].astype(str).str.lower().isin(["true", "1", "1.0"])]
    return table if table is not None and len(table) else None
