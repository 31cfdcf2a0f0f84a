"""Claims plumbing: the registry of published and issue claims, joined with the tables.

Every ``src/rgbench/claims/*.yaml`` is a list of entries (format in
docs/adding-an-experiment.md). Each entry names the table column that measures it, an
optional row filter, an aggregate over the matching rows and a verdict rule;
:func:`evaluate_claims` turns them into ``tables/claims.csv`` with one row per claim:

    claim_id, source, claim, anchor_value, measured_value, config, verdict, note, ...

``verdict`` is ``reproduced`` / ``not_reproduced`` from the rule, or ``not_run`` (with
the reason in ``note``) when the experiment is disabled, its table or matching rows are
missing, or the numbers come from the smoke preset, which checks plumbing only.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import yaml

from rgbench.io import atomic_path
from rgbench.runtime import get_logger

log = get_logger("claims")

RULES = ("at_least", "at_most", "within")
AGGREGATES = ("mean", "median", "max", "min")
REQUIRED_KEYS = ("id", "source", "claim", "anchor_value", "experiment", "column", "verdict")
OPTIONAL_KEYS = ("where", "aggregate")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CONTRACT_COLUMNS = ["claim_id", "source", "claim", "anchor_value", "measured_value", "config", "verdict"]
COLUMNS = CONTRACT_COLUMNS + ["note", "experiment", "column", "rule", "tolerance", "n_rows"]
# Presets whose numbers never count as a reproduction.
PLUMBING_PRESETS = ("smoke",)


class ClaimsError(ValueError):
    """A claims file or entry is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    claim: str
    anchor_value: float
    experiment: str
    column: str
    rule: str
    tolerance: float
    aggregate: str = "mean"
    where: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""  # "file.yaml entry N", for messages


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_entry(entry: Any, origin: str, experiments: Iterable[str] | None = None) -> Claim:
    """Validate one YAML entry; any problem raises :class:`ClaimsError` naming ``origin`` and the id."""
    if not isinstance(entry, dict):
        raise ClaimsError(f"{origin}: expected a mapping with keys {list(REQUIRED_KEYS)}, got {type(entry).__name__}")
    name = f"{origin} (id {entry.get('id')!r})"
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ClaimsError(f"{name}: missing keys {missing}")
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ClaimsError(f"{name}: unknown keys {unknown}; allowed: {list(REQUIRED_KEYS + OPTIONAL_KEYS)}")
    if not isinstance(entry["id"], str) or not ID_PATTERN.match(entry["id"]):
        raise ClaimsError(f"{name}: id must be a non-empty string of letters, digits, '_', '.', '-'")
    for key in ("source", "claim", "experiment", "column"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ClaimsError(f"{name}: {key} must be a non-empty string, got {entry[key]!r}")
    if not _is_number(entry["anchor_value"]):
        raise ClaimsError(f"{name}: anchor_value must be a finite number, got {entry['anchor_value']!r}")
    known = list(experiments) if experiments is not None else None
    if known is not None and entry["experiment"] not in known:
        raise ClaimsError(f"{name}: unknown experiment {entry['experiment']!r}; known: {sorted(known)}")
    verdict = entry["verdict"]
    if not isinstance(verdict, dict) or set(verdict) - {"rule", "tolerance"} or "rule" not in verdict:
        raise ClaimsError(f"{name}: verdict must be a mapping {{rule: {'|'.join(RULES)}, tolerance: number}}, "
                          f"got {verdict!r}")
    if verdict["rule"] not in RULES:
        raise ClaimsError(f"{name}: verdict rule {verdict['rule']!r} is not one of {list(RULES)}")
    tolerance = verdict.get("tolerance", 0.0)
    if not _is_number(tolerance) or tolerance < 0:
        raise ClaimsError(f"{name}: verdict tolerance must be a number >= 0, got {tolerance!r}")
    aggregate = entry.get("aggregate", "mean")
    if aggregate not in AGGREGATES:
        raise ClaimsError(f"{name}: aggregate {aggregate!r} is not one of {list(AGGREGATES)}")
    where = entry.get("where") or {}
    if not isinstance(where, dict) or not all(isinstance(k, str) for k in where):
        raise ClaimsError(f"{name}: where must be a mapping of column -> value, got {where!r}")
    for key, value in where.items():
        if isinstance(value, (dict, list)):
            raise ClaimsError(f"{name}: where[{key!r}] must be a single value (equality filter), got {value!r}")
    return Claim(id=entry["id"], source=entry["source"].strip(), claim=" ".join(entry["claim"].split()),
                 anchor_value=float(entry["anchor_value"]), experiment=entry["experiment"], column=entry["column"],
                 rule=verdict["rule"], tolerance=float(tolerance), aggregate=aggregate, where=dict(where),
                 origin=origin)


def load_claims(paths: Iterable[str | os.PathLike], experiments: Iterable[str] | None = None) -> list[Claim]:
    """Load and validate every entry of the given YAML files; ids must be unique across files."""
    known = list(experiments) if experiments is not None else None
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for path in sorted(map(Path, paths)):
        try:
            entries = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ClaimsError(f"{path}: not valid YAML ({error})") from error
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ClaimsError(f"{path}: must be a YAML list of claim entries, got {type(entries).__name__}")
        for number, entry in enumerate(entries, start=1):
            claim = parse_entry(entry, f"{path.name} entry {number}", known)
            if claim.id in seen:
                raise ClaimsError(f"{claim.origin}: duplicate claim id {claim.id!r} (first in {seen[claim.id]})")
            seen[claim.id] = claim.origin
            claims.append(claim)
    return claims


def verdict_for(measured: float, anchor: float, rule: str, tolerance: float) -> str:
    """``reproduced`` when the measured number satisfies the rule, else ``not_reproduced``."""
    if measured is None or not math.isfinite(measured):
        return "not_reproduced"
    if rule == "at_least":
        ok = measured >= anchor - tolerance
    elif rule == "at_most":
        ok = measured <= anchor + tolerance
    elif rule == "within":
        ok = abs(measured - anchor) <= tolerance
    else:
        raise ClaimsError(f"unknown verdict rule {rule!r}")
    return "reproduced" if ok else "not_reproduced"


def _matches(series: pd.Series, value: Any) -> pd.Series:
    """Equality that treats 6 == 6.0 == "6" and True == "True" the way a CSV round trip needs."""
    if _is_number(value) and pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return np.isclose(series.astype(float), float(value), rtol=0, atol=1e-12)
    return series.astype(str).str.strip().str.lower() == str(value).strip().lower()


def read_table(path: str | os.PathLike | None) -> pd.DataFrame | None:
    """A table, or None when it is missing or has no rows (an experiment with no runs yet)."""
    if path is None or not Path(path).exists():
        return None
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    return table if len(table) else None


def measure(claim: Claim, table: pd.DataFrame | None) -> tuple[float | None, int, str]:
    """(measured value, rows used, note); value None with the reason when it cannot be measured."""
    if table is None:
        return None, 0, f"table of {claim.experiment} is missing or empty"
    if claim.column not in table.columns:
        return None, 0, f"table of {claim.experiment} has no column {claim.column!r}"
    rows = table
    for key, value in claim.where.items():
        if key not in rows.columns:
            return None, 0, f"table of {claim.experiment} has no column {key!r} (used in where)"
        rows = rows[_matches(rows[key], value)]
    if rows.empty:
        return None, 0, f"no row of {claim.experiment} matches where {dict(claim.where)}"
    values = pd.to_numeric(rows[claim.column], errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).all():
        return float("nan"), len(values), f"column {claim.column!r} has no numeric value in the matching rows"
    values = values[~np.isnan(values)]
    value = float(getattr(np, claim.aggregate)(values))
    return value, len(values), ""


def evaluate_claims(claims: Iterable[Claim], tables: Mapping[str, str | os.PathLike | None],
                    enabled: Mapping[str, bool], preset: str) -> pd.DataFrame:
    """One row per claim (columns :data:`COLUMNS`).

    ``tables`` maps experiment -> table path (absent or None: no table); ``enabled``
    maps experiment -> whether this config runs it; ``preset`` goes into ``config``.
    """
    rows = []
    cache: dict[str, pd.DataFrame | None] = {}
    for claim in claims:
        measured: float | None = None
        n_rows = 0
        if not enabled.get(claim.experiment, False):
            verdict, note = "not_run", f"experiment {claim.experiment} is disabled in this config"
        else:
            if claim.experiment not in cache:
                cache[claim.experiment] = read_table(tables.get(claim.experiment))
            measured, n_rows, note = measure(claim, cache[claim.experiment])
            if measured is None:
                verdict = "not_run"
            elif preset in PLUMBING_PRESETS:
                verdict = "not_run"
                note = f"measured on the {preset} preset, which checks the plumbing and reproduces nothing"
            else:
                verdict = verdict_for(measured, claim.anchor_value, claim.rule, claim.tolerance)
        rows.append({
            "claim_id": claim.id, "source": claim.source, "claim": claim.claim, "anchor_value": claim.anchor_value,
            "measured_value": measured, "config": preset, "verdict": verdict, "note": note,
            "experiment": claim.experiment, "column": claim.column, "rule": claim.rule,
            "tolerance": claim.tolerance, "n_rows": n_rows,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_claims_table(claim_files: Iterable[str | os.PathLike], tables: Mapping[str, str | os.PathLike | None],
                       enabled: Mapping[str, bool], preset: str, output_csv: str | os.PathLike,
                       experiments: Iterable[str] | None = None) -> pd.DataFrame:
    """Load and validate the claims, join them with the tables, write the CSV atomically."""
    claims = load_claims(claim_files, experiments=experiments)
    table = evaluate_claims(claims, tables, enabled, preset)
    counts = table["verdict"].value_counts().to_dict() if len(table) else {}
    log.info("%d claims (%s) on preset %s", len(table), counts, preset)
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table
