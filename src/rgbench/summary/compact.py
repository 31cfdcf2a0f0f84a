"""The compact table of an experiment: what varies, and what is measured over seeds.

An experiment's table has one row per run and many columns (run ids, every setting,
provenance). The compact table groups the runs by the columns that vary in the study
(seeds pooled) and shows each measured column as mean ± sd over the group's runs, with
the number of runs. Columns the data file lists but the table lacks are reported, not
an error: the experiments change while the page is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rgbench.summary.scorecards import format_number, format_pm

TRUE = {"true"}


@dataclass
class CompactTable:
    columns: list[str]
    rows: list[list[str]]
    varies: list[str]  # the grouping columns that exist, in the data file's order
    measured: list[str]  # the measured columns that exist
    missing: list[str] = field(default_factory=list)  # listed in the data file, not in the table
    runs: int = 0

    @property
    def empty(self) -> bool:
        return not self.rows


def _is_flag(series: pd.Series) -> bool:
    """True/False columns (diverged, failed), also when a missing value made them text."""
    if pd.api.types.is_bool_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series):
        return False  # 0/1 numbers are measurements (a locality of 1.0 is not a flag)
    values = {str(v).strip().lower() for v in series.dropna()}
    return bool(values) and values <= {"true", "false"}


def summarise(series: pd.Series) -> str:
    """One measured column over a group of runs.

    Numbers: mean ± sd (sample sd, n >= 2), "(k of n)" when only k runs have a finite
    value. Flags (diverged, failed): "k of n". Text: the distinct values.
    """
    n = len(series)
    if _is_flag(series):
        hits = int(sum(str(v).strip().lower() in TRUE for v in series))
        return f"{hits} of {n}"
    values = pd.to_numeric(series, errors="coerce")
    if values.notna().sum() == 0 and series.notna().any():
        distinct = list(dict.fromkeys(str(v) for v in series.dropna()))
        return ", ".join(distinct[:3]) + (" …" if len(distinct) > 3 else "")
    finite = values[np.isfinite(values.astype(float))]
    if finite.empty:
        return "–"
    mean = float(finite.mean())
    text = format_pm(mean, float(finite.std(ddof=1))) if len(finite) >= 2 else format_number(mean)
    if len(finite) < n:
        text += f" ({len(finite)} of {n})"
    return text


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return format_number(value)


def compact_table(frame: pd.DataFrame, varies: Sequence[str], measured: Sequence[str]) -> CompactTable:
    """Group ``frame`` by the ``varies`` columns it has; summarise its ``measured`` columns.

    Groups keep the order in which they first appear in the table (the experiment's run
    order). With none of the ``varies`` columns present, all runs form one group.
    """
    present_varies = [column for column in varies if column in frame.columns]
    present_measured = [column for column in measured if column in frame.columns and column not in present_varies]
    missing = [column for column in [*varies, *measured] if column not in frame.columns]
    columns = [*present_varies, "runs", *present_measured]
    if frame.empty or not present_measured:
        return CompactTable(columns=columns, rows=[], varies=present_varies, measured=present_measured,
                            missing=missing, runs=len(frame))
    if present_varies:
        keys = frame[present_varies].astype(object).where(frame[present_varies].notna(), "–")
        groups = frame.groupby([keys[c] for c in present_varies], sort=False, dropna=False)
    else:
        groups = [((), frame)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        rows.append([*(_label(value) for value in key), str(len(group)),
                     *(summarise(group[column]) for column in present_measured)])
    return CompactTable(columns=columns, rows=rows, varies=present_varies, measured=present_measured,
                        missing=missing, runs=len(frame))
