"""Claims: published statements set beside the numbers this pipeline measures.

``claims/*.yaml`` holds what papers, seed documents and official repositories said, cited;
``targets/*.yaml`` the project's own goals (format: docs/adding-an-experiment.md). An entry
names the ``column`` that measures it, its rows (``where``), the ``protocol`` they must have
been run under (parameters and provenance, never a preset's name) and a rule. :func:`judge`
decides: (1) ``not_run`` when the experiment, table or column is missing (``awaits`` names
what would record a column); (2) failures first: a run launched under the protocol that
failed, even one that stopped early (short only in ``epochs``/``steps``), makes the claim
``not_reproduced`` naming it, unless the claim reads it in its favour (``failure`` /
``baseline_failure``: ``refutes`` or ``supports``; a diverged MLP is slower than any GloNet
that trained); (3) ``not_run`` when no run matches or fewer than ``min_seeds`` seeds ran;
(4) the interval: t over seeds; for one run Wilson for a proportion of ``trials``, else its
``<column>_se`` (seed-to-seed spread not in it), else a point, each said in the note.
One run per seed (two make the claim ``not_run`` naming what they differ in, never an
average); integer seeds; a baseline is paired by seed, else Welch with each group's seeds
in the note. :data:`~rgbench.evaluation.claims_data.DERIVED_COLUMNS` are read from the runs' metrics.json.
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

from rgbench.evaluation.claims_data import DERIVED_COLUMNS, read_table, with_derived_column
from rgbench.evaluation.stats import t_interval, welch_interval, wilson_interval
from rgbench.io import atomic_path
from rgbench.runtime import get_logger

log = get_logger("claims")

RULES = ("at_least", "at_most", "within")
VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_run")
FAILURE_MEANINGS = ("refutes", "supports")
REQUIRED_KEYS = ("id", "source", "claim", "anchor_value", "experiment", "column", "protocol", "verdict")
OPTIONAL_KEYS = ("where", "baseline", "min_seeds", "run_with", "failure", "baseline_failure", "trials", "awaits",
                 "timing_cv")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CONTRACT_COLUMNS = ["claim_id", "source", "claim", "anchor_value", "measured_value", "spread", "n_seeds", "config",
                    "verdict", "note"]
COLUMNS = CONTRACT_COLUMNS + ["experiment", "column", "rule", "tolerance", "threshold", "ci_low", "ci_high",
                              "protocol", "run_with"]
CONFIDENCE = 0.95
DEFAULT_MIN_SEEDS = 3
FAILURE_COLUMNS = ("diverged", "failed")  # flags of a failed run
# How long a run trained: a failed run short of the protocol's value here stopped early.
LENGTH_COLUMNS = ("epochs", "epochs_run", "steps", "steps_run")


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
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{self.column} in [{low:g}, {high:g}]"
        if low is not None or high is not None:
            return f"{self.column} {'>=' if low is not None else '<='} {low if low is not None else high:g}"
        return f"{self.column} = {'null' if self.equals is None else self.equals}"

    def mask(self, table: pd.DataFrame) -> pd.Series:
        if self.minimum is None and self.maximum is None:
            return _matches(table[self.column], self.equals)
        values = pd.to_numeric(table[self.column], errors="coerce")
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        return values.notna() & (values >= low) & (values <= high)

    def short_of(self, table: pd.DataFrame) -> pd.Series:
        """Rows whose length column falls below what the condition asks (stopped early)."""
        wanted = self.minimum if self.minimum is not None else self.equals
        ok = self.column in LENGTH_COLUMNS and _is_number(wanted)
        return pd.to_numeric(table[self.column], errors="coerce").lt(wanted if ok else -math.inf)


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
    failure: str = "refutes"  # what a failed measured run means
    baseline_failure: str = "refutes"  # what a failed baseline run means
    trials: str | int | None = None  # a single run's value is a proportion of this many trials
    awaits: Mapping[str, str] = field(default_factory=dict)  # column -> what would record it
    # a timing's run-to-run coefficient of variation on one machine: one run's interval
    timing_cv: float | None = None

    @property
    def threshold(self) -> float:
        sign = {"at_least": -1, "at_most": 1}.get(self.rule, 0)
        return self.anchor_value + sign * self.tolerance

    def describe_protocol(self) -> str:
        return "; ".join(condition.describe() for condition in self.protocol)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ClaimsError(message)


def _parse_protocol(protocol: Any, name: str) -> tuple[Condition, ...]:
    _require(isinstance(protocol, dict) and bool(protocol), f"{name}: protocol must be a non-empty mapping of column "
             "-> value or {min, max}: the data sizes, epochs, model size the claim was made under")
    conditions = []
    for column, spec in protocol.items():
        _require(not isinstance(spec, list), f"{name}: protocol[{column!r}] must be a value or a range, got a list")
        if isinstance(spec, dict):
            _require(bool(spec) and not set(spec) - {"min", "max"} and all(_is_number(v) for v in spec.values()),
                     f"{name}: protocol[{column!r}] must be a value or {{min: number, max: number}}, got {spec!r}")
            conditions.append(Condition(column, minimum=spec.get("min"), maximum=spec.get("max")))
        else:
            conditions.append(Condition(column, equals=spec))
    return tuple(conditions)


def _parse_where(where: Any, name: str, key: str = "where") -> dict[str, Any]:
    where = where or {}
    _require(isinstance(where, dict) and all(isinstance(k, str) for k in where),
             f"{name}: {key} must be a mapping of column -> value, got {where!r}")
    for column, value in where.items():
        _require(not isinstance(value, (dict, list)),
                 f"{name}: {key}[{column!r}] must be a single value (equality filter), got {value!r}")
    return dict(where)


def _parse_extras(entry: Mapping[str, Any], name: str, has_baseline: bool) -> dict[str, Any]:
    """failure / baseline_failure / trials / awaits, checked."""
    for key in ("failure", "baseline_failure"):
        _require(entry.get(key, "refutes") in FAILURE_MEANINGS,
                 f"{name}: {key} must be one of {list(FAILURE_MEANINGS)}, got {entry.get(key)!r}")
    _require(has_baseline == ("baseline_failure" in entry), f"{name}: a claim with a baseline must say what a failed "
             f"baseline run means (baseline_failure: {' | '.join(FAILURE_MEANINGS)}), and only such a claim")
    trials = entry.get("trials")
    _require(trials is None or (isinstance(trials, str) and bool(trials.strip())) or
             (isinstance(trials, int) and not isinstance(trials, bool) and trials > 0),
             f"{name}: trials must be a column name or a positive integer, got {trials!r}")
    awaits = entry.get("awaits") or {}
    _require(isinstance(awaits, dict) and all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                              for k, v in awaits.items()),
             f"{name}: awaits must map a column to what would record it, got {awaits!r}")
    timing_cv = entry.get("timing_cv")
    _require(timing_cv is None or (_is_number(timing_cv) and 0 < timing_cv < 1),
             f"{name}: timing_cv must be a number in (0, 1), got {timing_cv!r}")
    _require(timing_cv is None or trials is None, f"{name}: a claim has trials or timing_cv, not both")
    return {"failure": entry.get("failure", "refutes"), "baseline_failure": entry.get("baseline_failure", "refutes"),
            "trials": trials, "awaits": {k: " ".join(v.split()) for k, v in awaits.items()},
            "timing_cv": None if timing_cv is None else float(timing_cv)}


def parse_entry(entry: Any, origin: str, experiments: Iterable[str] | None = None) -> Claim:
    """Validate one YAML entry; any problem raises :class:`ClaimsError` naming ``origin`` and the id."""
    _require(isinstance(entry, dict),
             f"{origin}: expected a mapping with keys {list(REQUIRED_KEYS)}, got {type(entry).__name__}")
    name = f"{origin} (id {entry.get('id')!r})"
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    _require(not missing, f"{name}: missing keys {missing}")
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    _require(not unknown, f"{name}: unknown keys {unknown}; allowed: {list(REQUIRED_KEYS + OPTIONAL_KEYS)}")
    _require(isinstance(entry["id"], str) and bool(ID_PATTERN.match(entry["id"])),
             f"{name}: id must be a non-empty string of letters, digits, '_', '.', '-'")
    for key in ("source", "claim", "experiment", "column"):
        _require(isinstance(entry[key], str) and bool(entry[key].strip()),
                 f"{name}: {key} must be a non-empty string, got {entry[key]!r}")
    _require(_is_number(entry["anchor_value"]),
             f"{name}: anchor_value must be a finite number, got {entry['anchor_value']!r}")
    known = list(experiments) if experiments is not None else None
    _require(known is None or entry["experiment"] in known,
             f"{name}: unknown experiment {entry['experiment']!r}; known: {sorted(known or [])}")
    verdict = entry["verdict"]
    _require(isinstance(verdict, dict) and not set(verdict) - {"rule", "tolerance"} and "rule" in verdict,
             f"{name}: verdict must be a mapping {{rule: {'|'.join(RULES)}, tolerance: number}}, got {verdict!r}")
    _require(verdict["rule"] in RULES, f"{name}: verdict rule {verdict['rule']!r} is not one of {list(RULES)}")
    tolerance = verdict.get("tolerance", 0.0)
    _require(_is_number(tolerance) and tolerance >= 0,
             f"{name}: verdict tolerance must be a number >= 0, got {tolerance!r}")
    _require(verdict["rule"] != "within" or tolerance > 0,
             f"{name}: a `within` rule needs a tolerance > 0 (an interval can never equal a point)")
    baseline = entry.get("baseline")
    if baseline is not None:
        _require(isinstance(baseline, dict) and set(baseline) == {"where"},
                 f"{name}: baseline must be {{where: {{column: value, ...}}}}, got {baseline!r}")
        baseline = {"where": _parse_where(baseline["where"], name, "baseline.where")}
    min_seeds = entry.get("min_seeds", DEFAULT_MIN_SEEDS)
    _require(isinstance(min_seeds, int) and not isinstance(min_seeds, bool) and min_seeds >= 1,
             f"{name}: min_seeds must be an integer >= 1, got {min_seeds!r}")
    run_with = entry.get("run_with", "")
    _require(isinstance(run_with, str), f"{name}: run_with must be a string (the preset or command that runs it)")
    return Claim(id=entry["id"], source=" ".join(entry["source"].split()), claim=" ".join(entry["claim"].split()),
                 anchor_value=float(entry["anchor_value"]), experiment=entry["experiment"], column=entry["column"],
                 rule=verdict["rule"], tolerance=float(tolerance), protocol=_parse_protocol(entry["protocol"], name),
                 where=_parse_where(entry.get("where"), name), baseline=baseline, min_seeds=min_seeds,
                 run_with=" ".join(run_with.split()), origin=origin,
                 **_parse_extras(entry, name, baseline is not None))


def load_claims(paths: Iterable[str | os.PathLike], experiments: Iterable[str] | None = None) -> list[Claim]:
    """Load and validate every entry of the given YAML files; ids must be unique across files."""
    known = list(experiments) if experiments is not None else None
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for path in sorted(map(Path, paths)):
        try:
            entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except yaml.YAMLError as error:
            raise ClaimsError(f"{path}: not valid YAML ({error})") from error
        _require(isinstance(entries, list), f"{path}: must be a YAML list of entries, got {type(entries).__name__}")
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
    """The measured value with its spread and 95% interval; ``kind`` says which interval."""
    value: float
    spread: float | None  # sd over seeds (n >= 2), the run's standard error (n = 1), or None
    n: int
    low: float
    high: float
    kind: str = "t"  # t (over seeds), welch, se (one run's own SE), wilson, point, support


def estimate(values: np.ndarray, standard_errors: np.ndarray | None = None,
             confidence: float = CONFIDENCE) -> Estimate:
    """Mean of ``values`` (one per seed): the t-interval over seeds (n >= 2); one run's own
    standard error (normal quantile) when given; else a point."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("estimate needs at least one finite value")
    if values.size >= 2:
        mean, sd, low, high = t_interval(values, confidence)
        return Estimate(mean, sd, int(values.size), low, high, "t")
    mean = float(values[0])
    if standard_errors is not None and np.isfinite(standard_errors).all():
        se = float(np.asarray(standard_errors, dtype=float)[0])
        half = float(stats.norm.ppf(0.5 + confidence / 2)) * se
        return Estimate(mean, se, 1, mean - half, mean + half, "se")
    return Estimate(mean, None, 1, mean, mean, "point")


def proportion_estimate(value: float, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """One run's proportion ``value`` of ``trials`` with its Wilson interval (a width even at
    0% and 100%, where the Wald SE is zero); ``spread`` is the half-width in SE units."""
    if not 0 <= value <= 1:
        raise ValueError(f"a proportion must lie in [0, 1], got {value}")
    low, high = wilson_interval(round(value * trials), trials, confidence)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Estimate(float(value), (high - low) / (2 * z), 1, low, high, "wilson")


def welch_difference(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """mean(a) - mean(b) with Welch's t-interval (groups of >= 2 values each)."""
    diff, se, low, high = welch_interval(a, b, confidence)
    return Estimate(diff, se, min(len(a), len(b)), low, high, "welch")


def verdict_for(est: Estimate, anchor: float, rule: str, tolerance: float) -> str:
    """reproduced when the whole interval satisfies the rule, not_reproduced when none of
    it does, inconclusive when it straddles the threshold (or a `within` bound)."""
    bounds = {"at_least": (anchor - tolerance, math.inf), "at_most": (-math.inf, anchor + tolerance),
              "within": (anchor - tolerance, anchor + tolerance)}
    if rule not in bounds:
        raise ClaimsError(f"unknown verdict rule {rule!r}")
    lower, upper = bounds[rule]
    if lower <= est.low and est.high <= upper:
        return "reproduced"
    return "not_reproduced" if est.high < lower or est.low > upper else "inconclusive"


def _matches(series: pd.Series, value: Any) -> pd.Series:
    """Equality that treats 6 == 6.0 == "6", True == "True" and null == empty the way a CSV
    round trip needs."""
    if value is None:
        return series.isna() | series.astype(str).str.strip().str.lower().isin(["none", "null", ""])
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


def _name(row: pd.Series) -> str:
    return str(row.get("run_id", "?"))


@dataclass
class Selection:
    """One group's rows (measured or baseline) under the claim's protocol."""
    healthy: pd.DataFrame  # matched and not failed
    failed: list[str] = field(default_factory=list)  # why each failed run failed
    failed_keys: set = field(default_factory=set)  # their seeds (run ids where a run has none)
    left_out: str = ""  # runs of the selection outside the protocol, for the note
    mismatch: str = ""  # why nothing matched


def _select(claim: Claim, rows: pd.DataFrame) -> Selection:
    """Healthy matching runs, and failed runs launched under the protocol (even stopped early)."""
    ok_all, launched = pd.Series(True, index=rows.index), pd.Series(True, index=rows.index)
    mismatches, short_notes = [], {}
    for condition in claim.protocol:
        if condition.column not in rows.columns:
            awaits = f": {claim.awaits[condition.column]}" if condition.column in claim.awaits else ""
            mismatches.append(f"the runs record no {condition.column!r} (needs {condition.describe()}){awaits}")
            ok_all, launched = ok_all & False, launched & False
            continue
        ok, short = condition.mask(rows), condition.short_of(rows)
        if not ok.all():
            seen = sorted({str(v) for v in rows.loc[~ok, condition.column]})
            mismatches.append(f"{condition.column} = {', '.join(seen[:4])} (the claim needs {condition.describe()})")
        for index in rows.index[short]:
            short_notes[index] = f"stopped early: {condition.column} = {rows.at[index, condition.column]} of " \
                                 f"the protocol's {condition.describe()}"
        ok_all &= ok
        launched &= ok | short
    selection = Selection(healthy=rows.iloc[0:0])
    keep = []
    for index, row in rows[launched].iterrows():
        reasons = _failure_reasons(row, claim.column)
        if reasons:
            selection.failed.append("; ".join(reasons) + (f" ({short_notes[index]})" if index in short_notes else ""))
            seed = pd.to_numeric(pd.Series([row.get("seed")]), errors="coerce").iloc[0]
            selection.failed_keys.add(int(seed) if np.isfinite(seed) else _name(row))
        elif ok_all[index]:
            keep.append(index)
    selection.healthy = rows.loc[keep]
    out = len(rows) - len(keep) - len(selection.failed)
    if out and mismatches:
        selection.left_out = f"{out} run(s) outside the protocol left out ({'; '.join(mismatches)})"
    if not keep and not selection.failed:
        selection.mismatch = "no run matches the claim's protocol: " + "; ".join(mismatches)
    return selection


def _failure_reasons(row: pd.Series, column: str) -> list[str]:
    """Why this run failed: diverged / failed flags, or no finite value."""
    reasons = [f"run {_name(row)} {flag}" for flag in FAILURE_COLUMNS
               if str(row.get(flag)).strip().lower() in ("true", "1", "1.0")]
    value = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iloc[0]
    if not np.isfinite(value):
        reasons.append(f"run {_name(row)} has no finite {column}")
    return reasons


def _per_seed(rows: pd.DataFrame, column: str) -> tuple[pd.Series, bool, str]:
    """(values by integer seed, seeded, problem): runs without seeds count once each and pair
    with nothing; two runs of one seed are a problem naming what they differ in."""
    values = pd.to_numeric(rows[column], errors="coerce")
    seeds = pd.to_numeric(rows["seed"], errors="coerce") if "seed" in rows.columns else None
    if seeds is None or seeds.isna().any() or not np.allclose(seeds, np.round(seeds)):
        return pd.Series(values.to_numpy(), index=[_name(r) for _, r in rows.iterrows()]), False, ""
    repeated = seeds[seeds.duplicated(keep=False)]
    if not repeated.empty:
        group = rows.loc[repeated.index[repeated == repeated.iloc[0]]]
        skip = {"run_id", column, f"{column}_se", "wall_seconds", "device"}
        differ = [c for c in group.columns if c not in skip and group[c].astype(str).nunique() > 1]
        return values.iloc[0:0], True, (
            f"{len(group)} runs of seed {int(repeated.iloc[0])} match ({', '.join(group['run_id'].astype(str))}); "
            f"they differ in {', '.join(differ[:5]) or 'no recorded column'}: the claim must pin which one "
            "(protocol or where), rows of one seed are never averaged")
    return pd.Series(values.to_numpy(), index=seeds.round().astype(int).to_numpy()), True, ""


def _config_note(claim: Claim, rows: pd.DataFrame, preset: str) -> str:
    """What the judged runs actually used, for the claims table's ``config`` column."""
    return "; ".join([f"preset {preset}"] + [f"{c.column}={'/'.join(sorted({str(v) for v in rows[c.column]})[:3])}"
                                             for c in claim.protocol if c.column in rows.columns])


def _missing_column(claim: Claim, column: str) -> str:
    if column in claim.awaits:
        return f"the runs of {claim.experiment} record no {column!r} yet: {claim.awaits[column]}"
    derived = f" and its runs do not give it ({DERIVED_COLUMNS[column][0]})" if column in DERIVED_COLUMNS else ""
    return f"the table of {claim.experiment} has no column {column!r}{derived}"


@dataclass
class Judgement:
    verdict: str
    note: str = ""
    estimate: Estimate | None = None
    config: str = ""


def _single_run(claim: Claim, rows: pd.DataFrame, value: float,
                base: pd.DataFrame | None = None) -> tuple[Estimate | None, str]:
    """One run's (or seed pair's) interval: Wilson for a proportion of ``trials``, the
    machine's run-to-run spread for a timing with ``timing_cv``, else the ``<column>_se``
    (of both runs, combined), else a point; and the note saying what it covers."""
    if claim.timing_cv is not None and base is None:
        # A CPU-time measured once moves with the machine's speed at that hour and with what
        # shares its core; judged as a point, its verdict flips between runs of the same code.
        return estimate(np.array([value]), np.array([claim.timing_cv * value])), (
            f"one timing: the interval is this machine's run-to-run variation of it (coefficient of variation "
            f"{claim.timing_cv:g} over repeated runs of the same code), not a spread this run measured")
    trials = None if base is not None else claim.trials
    if isinstance(trials, str) and trials not in rows.columns:
        return None, _missing_column(claim, trials) + f" (the trials behind one run's {claim.column})"
    if trials is not None:
        trials = int(pd.to_numeric(rows[trials], errors="coerce").iloc[0]) if isinstance(trials, str) else trials
        return proportion_estimate(value, trials), f"one run: Wilson 95% interval, {round(value * trials)} of {trials}"
    se_column, frames = f"{claim.column}_se", [rows] + ([base] if base is not None else [])
    if all(se_column in f.columns and len(f) == 1 for f in frames):
        se = math.sqrt(sum(float(pd.to_numeric(f[se_column], errors="coerce").iloc[0]) ** 2 for f in frames))
        est = estimate(np.array([value]), np.array([se]))
        if est.kind == "se":
            covers = f"this run's own {se_column}" if base is None else \
                f"the two runs' own {se_column} combined (unpaired; pairing per image would be narrower)"
            return est, f"one seed: the interval is {covers}, the noise of the evaluation images; seed-to-seed " \
                        "spread is not in it"
    return estimate(np.array([value])), ("one run without an interval, judged as a point: run-to-run noise (of a "
                                         "timing, a sampler, a seed) is not in the verdict; repeats would give one")


def judge(claim: Claim, table: pd.DataFrame | None, enabled: bool, preset: str = "",
          runs_dir: str | os.PathLike | None = None) -> Judgement:
    """The verdict of one claim on its experiment's table (see the module docstring);
    ``runs_dir`` (runs/<experiment>) gives the derived columns."""
    hint = f" To run it: {claim.run_with}." if claim.run_with else ""
    config = f"preset {preset}"

    def not_run(note: str, est: Estimate | None = None) -> Judgement:
        return Judgement("not_run", note.rstrip(".") + "." + hint, est, config)

    if not enabled or table is None:
        return not_run(f"experiment {claim.experiment} is disabled in this config" if not enabled else
                       f"the table of {claim.experiment} is missing or empty")
    table = with_derived_column(table, claim.column, runs_dir)
    if claim.column not in table.columns:
        return not_run(_missing_column(claim, claim.column))
    groups: list[Selection] = []
    for where in [claim.where] + ([claim.baseline["where"]] if claim.baseline else []):
        rows, problem = _filter(table, where)
        if rows is None or rows.empty:
            picked = ", ".join(f"{k}={v}" for k, v in where.items())
            problem = problem or f"no run of {claim.experiment} matches {picked}"
            return not_run(("baseline: " if groups else "") + problem)
        groups.append(_select(claim, rows))
    main, base = groups[0], (groups[1] if len(groups) > 1 else Selection(healthy=table.iloc[0:0]))
    config = _config_note(claim, main.healthy, preset)
    # Failures first: a run launched under the protocol that failed decides before any filter.
    refuting = (main.failed if claim.failure == "refutes" else []) + \
        ([f"baseline {f}" for f in base.failed] if claim.baseline_failure == "refutes" else [])
    if refuting:
        return Judgement("not_reproduced", "failed runs launched under the claim's protocol count against it: "
                         + "; ".join(refuting), None, config)
    for prefix, group in (("", main), ("baseline: ", base if claim.baseline else None)):
        if group is not None and group.healthy.empty and not group.failed:
            return not_run(prefix + group.mismatch)
    supported = main.failed_keys | base.failed_keys
    notes = [f"counted for the claim (failed runs, which this claim reads in its favour): "
             f"{'; '.join(main.failed + base.failed)}"] if supported else []
    notes += [prefix + g.left_out for prefix, g in (("", main), ("baseline: ", base)) if g.left_out]
    values, seeded, problem = _per_seed(main.healthy, claim.column)
    base_values, base_seeded, base_problem = _per_seed(base.healthy, claim.column)
    if problem or base_problem:
        return not_run(problem or "baseline: " + base_problem)
    values = values.drop([k for k in supported if k in values.index])
    base_values = base_values.drop([k for k in supported if k in base_values.index])
    est: Estimate | None = None
    if claim.baseline and not values.empty:
        if seeded and base_seeded and set(values.index) == set(base_values.index):
            values = values - base_values.loc[values.index]
            notes.insert(0, f"paired by seed ({', '.join(map(str, sorted(values.index)))})")
        else:
            need = max(2, claim.min_seeds)
            where = f"measured runs {sorted(map(str, values.index))} vs baseline {sorted(map(str, base_values.index))}"
            if min(len(values), len(base_values)) < need:
                return not_run(f"unpaired groups ({where}); unpaired groups are judged on >= {need} seeds each")
            est = welch_difference(values.to_numpy(), base_values.to_numpy())
            notes.insert(0, f"unpaired ({where}): Welch interval of the difference of the means")
    n = (est.n if est else len(values)) + len(supported)
    if values.empty:  # every seed was decided by a failed run read in the claim's favour
        if n < claim.min_seeds:
            return not_run(f"{n} seed(s); the claim is judged on >= {claim.min_seeds} seeds")
        return Judgement("reproduced", "; ".join(notes), Estimate(math.nan, None, n, math.nan, math.nan, "support"),
                         config)
    if est is None and len(values) >= 2:
        est = estimate(values.to_numpy())
    elif est is None:
        est, note = _single_run(claim, main.healthy, float(values.iloc[0]), base.healthy if claim.baseline else None)
        if est is None:
            return not_run(note)
        notes.insert(0, note)
    est = Estimate(est.value, est.spread, n, est.low, est.high, est.kind)
    if n < claim.min_seeds:
        return not_run(f"{n} seed(s); the claim is judged on >= {claim.min_seeds} seeds so that seed noise is known",
                       est)
    return Judgement(verdict_for(est, claim.anchor_value, claim.rule, claim.tolerance), "; ".join(notes), est, config)


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.6g}")


def evaluate_claims(claims: Iterable[Claim], tables: Mapping[str, str | os.PathLike | None],
                    enabled: Mapping[str, bool], preset: str = "") -> pd.DataFrame:
    """One row per claim (columns :data:`COLUMNS`). ``tables``: experiment -> table path (the
    runs beside it, ``runs/<experiment>/``, give derived columns); ``enabled``: experiment ->
    whether this config runs it; ``preset`` only goes into ``config``."""
    rows = []
    cache: dict[str, pd.DataFrame | None] = {}
    for claim in claims:
        path = tables.get(claim.experiment)
        if claim.experiment not in cache:
            cache[claim.experiment] = read_table(path)
        runs_dir = Path(path).parent.parent / "runs" / claim.experiment if path else None
        result = judge(claim, cache[claim.experiment], enabled.get(claim.experiment, False), preset, runs_dir)
        est = result.estimate
        interval = est is not None and est.kind not in ("point", "support")
        rows.append({
            "claim_id": claim.id, "source": claim.source, "claim": claim.claim, "anchor_value": claim.anchor_value,
            "measured_value": _round(est.value) if est else None,
            "spread": _round(est.spread) if est and est.spread is not None else None,
            "n_seeds": est.n if est else 0, "config": result.config or f"preset {preset}",
            "verdict": result.verdict, "note": result.note, "experiment": claim.experiment, "column": claim.column,
            "rule": claim.rule, "tolerance": claim.tolerance, "threshold": claim.threshold,
            "ci_low": _round(est.low) if interval else None, "ci_high": _round(est.high) if interval else None,
            "protocol": claim.describe_protocol(), "run_with": claim.run_with,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_claims_table(claim_files: Iterable[str | os.PathLike], tables: Mapping[str, str | os.PathLike | None],
                       enabled: Mapping[str, bool], output_csv: str | os.PathLike, preset: str = "",
                       experiments: Iterable[str] | None = None, probe: bool = False) -> pd.DataFrame:
    """Load and validate the entries, judge them on the tables, write the CSV atomically.
    ``probe``: the paper preset's probe ran (a few steps per job), so nothing is judged."""
    claims = load_claims(claim_files, experiments=experiments)
    table = evaluate_claims(claims, tables, {} if probe else enabled, preset)
    if probe:
        table["note"] = "not judged: the paper preset's probe runs every job for a few steps only."
    counts = table["verdict"].value_counts().to_dict() if len(table) else {}
    log.info("%d entries -> %s (%s)", len(table), output_csv, counts)
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table
