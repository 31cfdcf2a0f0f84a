"""Claims: published statements set beside the numbers this pipeline measures.

Every ``src/rgbench/claims/*.yaml`` is a list of entries (format in
docs/adding-an-experiment.md), each a statement from a paper, a seed document or an
official repository, with a citation a reader can follow. ``src/rgbench/targets/*.yaml``
holds the project's own targets in the same format; they go to ``tables/targets.csv``,
never into the claims table.

An entry names the table ``column`` that measures it, the rows that do (``where``), the
protocol those rows must have been run under (``protocol``: data sizes, epochs, model
size ... matched against the runs' provenance and parameters, never against a preset's
name), and a verdict rule. :func:`judge` turns one entry and its table into a verdict:

- ``not_run``: the experiment is off, or no run matches the claim's protocol (the note
  names the mismatch), or fewer seeds than the claim needs;
- ``not_reproduced``: a matching run diverged or failed (the note names it), or the 95%
  interval lies wholly on the wrong side of the threshold;
- ``inconclusive``: the interval straddles the threshold;
- ``reproduced``: the whole interval clears the threshold.

The interval is the t-interval of the mean over seeds (n >= 2), or, for a single run,
the run's own standard error (a ``<column>_se`` column) times 1.96. A claim may compare
two groups of rows (``baseline``): the measure is then the difference of their means,
paired by seed when both groups have the same seeds.
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
from scipy import stats

from rgbench.io import atomic_path
from rgbench.runtime import get_logger

log = get_logger("claims")

RULES = ("at_least", "at_most", "within")
VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_run")
REQUIRED_KEYS = ("id", "source", "claim", "anchor_value", "experiment", "column", "protocol", "verdict")
OPTIONAL_KEYS = ("where", "baseline", "min_seeds", "run_with")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CONTRACT_COLUMNS = ["claim_id", "source", "claim", "anchor_value", "measured_value", "spread", "n_seeds", "config",
                    "verdict", "note"]
COLUMNS = CONTRACT_COLUMNS + ["experiment", "column", "rule", "tolerance", "threshold", "ci_low", "ci_high",
                              "protocol", "run_with"]
CONFIDENCE = 0.95
DEFAULT_MIN_SEEDS = 3
# Columns that mark a failed run: a claim with such a row among its runs is not reproduced.
FAILURE_COLUMNS = ("diverged", "failed")


class ClaimsError(ValueError):
    """A claims file or entry is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Condition:
    """One protocol requirement on a column: equal to ``value``, or within [min, max]."""

    column: str
    equals: Any = None
    minimum: float | None = None
    maximum: float | None = None

    def describe(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"{self.column} in [{self.minimum:g}, {self.maximum:g}]"
        if self.minimum is not None:
            return f"{self.column} >= {self.minimum:g}"
        if self.maximum is not None:
            return f"{self.column} <= {self.maximum:g}"
        return f"{self.column} = {self.equals}"

    def mask(self, table: pd.DataFrame) -> pd.Series:
        series = table[self.column]
        if self.minimum is None and self.maximum is None:
            return _matches(series, self.equals)
        values = pd.to_numeric(series, errors="coerce")
        ok = values.notna()
        if self.minimum is not None:
            ok &= values >= self.minimum
        if self.maximum is not None:
            ok &= values <= self.maximum
        return ok


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
    protocol: tuple[Condition, ...]
    where: Mapping[str, Any] = field(default_factory=dict)
    baseline: Mapping[str, Any] | None = None
    min_seeds: int = DEFAULT_MIN_SEEDS
    run_with: str = ""  # what would run it (preset, hardware, command) when it is not_run
    origin: str = ""  # "file.yaml entry N", for messages

    @property
    def threshold(self) -> float:
        if self.rule == "at_least":
            return self.anchor_value - self.tolerance
        if self.rule == "at_most":
            return self.anchor_value + self.tolerance
        return self.anchor_value

    def describe_protocol(self) -> str:
        return "; ".join(condition.describe() for condition in self.protocol)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_protocol(protocol: Any, name: str) -> tuple[Condition, ...]:
    if not isinstance(protocol, dict) or not protocol:
        raise ClaimsError(f"{name}: protocol must be a non-empty mapping of column -> value or {{min, max}}: "
                          "the data sizes, epochs, model size the claim was made under")
    conditions = []
    for column, spec in protocol.items():
        if isinstance(spec, dict):
            unknown = set(spec) - {"min", "max"}
            if unknown or not spec or not all(_is_number(v) for v in spec.values()):
                raise ClaimsError(f"{name}: protocol[{column!r}] must be a value or {{min: number, max: number}}, "
                                  f"got {spec!r}")
            conditions.append(Condition(column, minimum=spec.get("min"), maximum=spec.get("max")))
        elif isinstance(spec, list):
            raise ClaimsError(f"{name}: protocol[{column!r}] must be a single value or a range, got a list")
        else:
            conditions.append(Condition(column, equals=spec))
    return tuple(conditions)


def _parse_where(where: Any, name: str, key: str = "where") -> dict[str, Any]:
    where = where or {}
    if not isinstance(where, dict) or not all(isinstance(k, str) for k in where):
        raise ClaimsError(f"{name}: {key} must be a mapping of column -> value, got {where!r}")
    for column, value in where.items():
        if isinstance(value, (dict, list)):
            raise ClaimsError(f"{name}: {key}[{column!r}] must be a single value (equality filter), got {value!r}")
    return dict(where)


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
    if verdict["rule"] == "within" and tolerance <= 0:
        raise ClaimsError(f"{name}: a `within` rule needs a tolerance > 0 (an interval can never equal a point)")
    baseline = entry.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, dict) or set(baseline) != {"where"}:
            raise ClaimsError(f"{name}: baseline must be {{where: {{column: value, ...}}}}, got {baseline!r}")
        baseline = {"where": _parse_where(baseline["where"], name, "baseline.where")}
    min_seeds = entry.get("min_seeds", DEFAULT_MIN_SEEDS)
    if not isinstance(min_seeds, int) or isinstance(min_seeds, bool) or min_seeds < 1:
        raise ClaimsError(f"{name}: min_seeds must be an integer >= 1, got {min_seeds!r}")
    run_with = entry.get("run_with", "")
    if not isinstance(run_with, str):
        raise ClaimsError(f"{name}: run_with must be a string (the preset or command that runs the claim)")
    return Claim(id=entry["id"], source=" ".join(entry["source"].split()), claim=" ".join(entry["claim"].split()),
                 anchor_value=float(entry["anchor_value"]), experiment=entry["experiment"], column=entry["column"],
                 rule=verdict["rule"], tolerance=float(tolerance), protocol=_parse_protocol(entry["protocol"], name),
                 where=_parse_where(entry.get("where"), name), baseline=baseline, min_seeds=min_seeds,
                 run_with=" ".join(run_with.split()), origin=origin)


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


# ----------------------------------------------------------------------------- the verdict

@dataclass(frozen=True)
class Estimate:
    """The measured mean with its spread and 95% interval."""

    value: float
    spread: float | None  # sd over seeds (n >= 2) or the run's standard error (n = 1)
    n: int
    low: float
    high: float


def estimate(values: np.ndarray, standard_errors: np.ndarray | None = None,
             confidence: float = CONFIDENCE) -> Estimate:
    """Mean of ``values`` (one per seed) with a ``confidence`` interval.

    n >= 2: Student-t interval of the mean over seeds. n = 1: the run's own standard error
    (normal quantile) when given, else a point (no interval: the caller decides whether a
    single run may be judged).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("estimate needs at least one finite value")
    n = int(values.size)
    mean = float(values.mean())
    if n >= 2:
        sd = float(values.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
        return Estimate(mean, sd, n, mean - half, mean + half)
    if standard_errors is not None and np.isfinite(standard_errors).all():
        se = float(np.asarray(standard_errors, dtype=float)[0])
        half = float(stats.norm.ppf(0.5 + confidence / 2)) * se
        return Estimate(mean, se, 1, mean - half, mean + half)
    return Estimate(mean, None, 1, mean, mean)


def welch_difference(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """mean(a) - mean(b) with Welch's t-interval (groups of >= 2 values each)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(diff, 0.0, min(len(a), len(b)), diff, diff)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return Estimate(diff, se, min(len(a), len(b)), diff - half, diff + half)


def verdict_for(est: Estimate, anchor: float, rule: str, tolerance: float) -> str:
    """reproduced when the whole interval satisfies the rule, not_reproduced when none of
    it does, inconclusive when it straddles the threshold (or a `within` bound)."""
    if rule == "at_least":
        threshold = anchor - tolerance
        if est.low >= threshold:
            return "reproduced"
        return "not_reproduced" if est.high < threshold else "inconclusive"
    if rule == "at_most":
        threshold = anchor + tolerance
        if est.high <= threshold:
            return "reproduced"
        return "not_reproduced" if est.low > threshold else "inconclusive"
    if rule == "within":
        lower, upper = anchor - tolerance, anchor + tolerance
        if lower <= est.low and est.high <= upper:
            return "reproduced"
        return "not_reproduced" if est.high < lower or est.low > upper else "inconclusive"
    raise ClaimsError(f"unknown verdict rule {rule!r}")


def _matches(series: pd.Series, value: Any) -> pd.Series:
    """Equality that treats 6 == 6.0 == "6" and True == "True" the way a CSV round trip needs."""
    if _is_number(value) and pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return pd.Series(np.isclose(series.astype(float), float(value), rtol=0, atol=1e-12), index=series.index)
    return series.astype(str).str.strip().str.lower() == str(value).strip().lower()


def _filter(table: pd.DataFrame, where: Mapping[str, Any]) -> tuple[pd.DataFrame | None, str]:
    rows = table
    for column, value in where.items():
        if column not in rows.columns:
            return None, f"the table has no column {column!r} (used in where)"
        rows = rows[_matches(rows[column], value)]
    return rows, ""


def _protocol_rows(claim: Claim, rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows run under the claim's protocol, or none with a note naming the mismatch."""
    keep = pd.Series(True, index=rows.index)
    mismatches = []
    for condition in claim.protocol:
        if condition.column not in rows.columns:
            mismatches.append(f"the runs record no {condition.column!r} (the claim needs {condition.describe()})")
            keep &= False
            continue
        ok = condition.mask(rows)
        if not ok.all():
            seen = sorted({str(v) for v in rows.loc[~ok, condition.column]})
            mismatches.append(f"{condition.column} = {', '.join(seen[:4])} (the claim needs {condition.describe()})")
        keep &= ok
    matched = rows[keep]
    if matched.empty:
        return matched, "no run matches the claim's protocol: " + "; ".join(mismatches)
    return matched, ""


def _failures(rows: pd.DataFrame, column: str) -> list[str]:
    """Why any of these runs failed: diverged / failed flags, or no finite value."""
    reasons = []
    for _, row in rows.iterrows():
        name = row.get("run_id", "?")
        for flag in FAILURE_COLUMNS:
            if flag in row.index and str(row[flag]).strip().lower() in ("true", "1", "1.0"):
                reasons.append(f"run {name} {flag}")
        value = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iloc[0]
        if not np.isfinite(value):
            reasons.append(f"run {name} has no finite {column}")
    return reasons


def _per_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """One value per seed (rows of one seed are averaged), indexed by seed."""
    values = pd.to_numeric(rows[column], errors="coerce")
    seeds = rows["seed"] if "seed" in rows.columns else pd.Series(range(len(rows)), index=rows.index)
    return values.groupby(seeds.astype(str)).mean()


def _config_note(claim: Claim, rows: pd.DataFrame, preset: str) -> str:
    """What the judged runs actually used, for the claims table's ``config`` column."""
    parts = [f"preset {preset}"]
    for condition in claim.protocol:
        if condition.column in rows.columns:
            values = sorted({str(v) for v in rows[condition.column]})
            parts.append(f"{condition.column}={'/'.join(values[:3])}")
    return "; ".join(parts)


@dataclass
class Judgement:
    verdict: str
    note: str = ""
    estimate: Estimate | None = None
    config: str = ""


def judge(claim: Claim, table: pd.DataFrame | None, enabled: bool, preset: str = "") -> Judgement:
    """The verdict of one claim on its experiment's table (see the module docstring)."""
    hint = f" To run it: {claim.run_with}." if claim.run_with else ""
    if not enabled:
        return Judgement("not_run", f"experiment {claim.experiment} is disabled in this config.{hint}")
    if table is None:
        return Judgement("not_run", f"the table of {claim.experiment} is missing or empty.{hint}")
    if claim.column not in table.columns:
        return Judgement("not_run", f"the table of {claim.experiment} has no column {claim.column!r}")
    rows, problem = _filter(table, claim.where)
    if rows is None:
        return Judgement("not_run", problem)
    if rows.empty:
        return Judgement("not_run", f"no run of {claim.experiment} matches {_describe_where(claim.where)}.{hint}")
    rows, problem = _protocol_rows(claim, rows)
    if rows.empty:
        return Judgement("not_run", problem + "." + hint)
    config = _config_note(claim, rows, preset)
    base_rows = None
    if claim.baseline is not None:
        base_rows, problem = _filter(table, claim.baseline["where"])
        if base_rows is None:
            return Judgement("not_run", problem)
        base_rows, problem = _protocol_rows(claim, base_rows)
        if base_rows.empty:
            return Judgement("not_run", "baseline: " + (problem or "no run matches") + "." + hint)
    failures = _failures(rows, claim.column) + ([] if base_rows is None else _failures(base_rows, claim.column))
    if failures:
        return Judgement("not_reproduced", "failed runs count against the claim: " + "; ".join(failures), None, config)
    values = _per_seed(rows, claim.column)
    if base_rows is not None:
        base = _per_seed(base_rows, claim.column)
        if set(values.index) == set(base.index):
            values = values - base.loc[values.index]  # paired by seed
        else:
            if min(len(values), len(base)) < max(2, claim.min_seeds):
                return Judgement("not_run", f"unpaired groups of {len(values)} and {len(base)} seeds; the claim is "
                                 f"judged on >= {max(2, claim.min_seeds)} seeds each.{hint}", None, config)
            est = welch_difference(values.to_numpy(), base.to_numpy())
            return Judgement(verdict_for(est, claim.anchor_value, claim.rule, claim.tolerance),
                             "difference of unpaired group means (Welch interval)", est, config)
    n = len(values)
    se_column = f"{claim.column}_se"
    standard_errors = None
    if n == 1 and base_rows is None and se_column in rows.columns:
        standard_errors = pd.to_numeric(rows[se_column], errors="coerce").to_numpy()[:1]
    if n < claim.min_seeds:
        est = estimate(values.to_numpy(), standard_errors)
        return Judgement("not_run", f"{n} seed(s); the claim is judged on >= {claim.min_seeds} seeds so that "
                         f"seed noise is known.{hint}", est, config)
    est = estimate(values.to_numpy(), standard_errors)
    note = "" if est.spread is not None else "a single run without a standard error: judged as a point"
    return Judgement(verdict_for(est, claim.anchor_value, claim.rule, claim.tolerance), note, est, config)


def _describe_where(where: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items()) or "any row"


def read_table(path: str | os.PathLike | None) -> pd.DataFrame | None:
    """A table, or None when it is missing or has no rows (an experiment with no runs yet)."""
    if path is None or not Path(path).exists():
        return None
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    return table if len(table) else None


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.6g}")


def evaluate_claims(claims: Iterable[Claim], tables: Mapping[str, str | os.PathLike | None],
                    enabled: Mapping[str, bool], preset: str = "") -> pd.DataFrame:
    """One row per claim (columns :data:`COLUMNS`).

    ``tables`` maps experiment -> table path (absent or None: no table); ``enabled`` maps
    experiment -> whether this config runs it; ``preset`` is only written into ``config``.
    """
    rows = []
    cache: dict[str, pd.DataFrame | None] = {}
    for claim in claims:
        if claim.experiment not in cache:
            cache[claim.experiment] = read_table(tables.get(claim.experiment))
        result = judge(claim, cache[claim.experiment], enabled.get(claim.experiment, False), preset)
        est = result.estimate
        rows.append({
            "claim_id": claim.id, "source": claim.source, "claim": claim.claim, "anchor_value": claim.anchor_value,
            "measured_value": _round(est.value) if est else None,
            "spread": _round(est.spread) if est and est.spread is not None else None,
            "n_seeds": est.n if est else 0, "config": result.config or f"preset {preset}",
            "verdict": result.verdict, "note": result.note, "experiment": claim.experiment, "column": claim.column,
            "rule": claim.rule, "tolerance": claim.tolerance, "threshold": claim.threshold,
            "ci_low": _round(est.low) if est and est.spread is not None else None,
            "ci_high": _round(est.high) if est and est.spread is not None else None,
            "protocol": claim.describe_protocol(), "run_with": claim.run_with,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_claims_table(claim_files: Iterable[str | os.PathLike], tables: Mapping[str, str | os.PathLike | None],
                       enabled: Mapping[str, bool], output_csv: str | os.PathLike, preset: str = "",
                       experiments: Iterable[str] | None = None) -> pd.DataFrame:
    """Load and validate the entries, judge them on the tables, write the CSV atomically."""
    claims = load_claims(claim_files, experiments=experiments)
    table = evaluate_claims(claims, tables, enabled, preset)
    counts = table["verdict"].value_counts().to_dict() if len(table) else {}
    log.info("%d entries -> %s (%s)", len(table), output_csv, counts)
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table
