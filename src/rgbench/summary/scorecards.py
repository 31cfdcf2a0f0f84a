"""Scorecards: one card per seed document, its claims with verdicts beside their anchors.

What a card shows beyond the run's own files (the seed's question, which figure is its
thumbnail, which columns the compact table groups by and measures, what command runs a
``not_run`` claim) lives in one data file, ``report/scorecards.yaml``;
:func:`load_scorecards` checks it. :func:`claim_views` turns rows of ``claims.csv`` or
``targets.csv`` into what a card lists.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import yaml

VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_run")
# How a verdict reads on a claim (published) and on a target (the project's own goal):
# the words differ so that a target can never be mistaken for a reproduced claim.
CLAIM_WORDS = {"reproduced": "reproduced", "not_reproduced": "not reproduced", "inconclusive": "inconclusive",
               "not_run": "not run"}
TARGET_WORDS = {"reproduced": "met", "not_reproduced": "not met", "inconclusive": "inconclusive",
                "not_run": "not run"}
SYMBOLS = {"reproduced": "✓", "not_reproduced": "✗", "inconclusive": "?", "not_run": "○"}
RULE_SYMBOLS = {"at_least": "≥", "at_most": "≤", "within": "≈"}

CARD_KEYS = {"id", "title", "short", "seed", "question", "answer", "thumbnail", "run", "experiments"}
RUN_KEYS = {"claims", "preset", "hardware", "command"}
EXPERIMENT_KEYS = {"title", "varies", "measured"}
ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ScorecardsError(ValueError):
    """The scorecards data file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class RunOption:
    """What runs a not_run claim: a preset on some hardware, by one command."""

    preset: str
    hardware: str
    command: str
    claims: tuple[str, ...] = ("*",)

    def matches(self, claim_id: str) -> bool:
        return any(fnmatch.fnmatchcase(claim_id, pattern) for pattern in self.claims)


@dataclass(frozen=True)
class ExperimentView:
    name: str
    title: str
    varies: tuple[str, ...]
    measured: tuple[str, ...]


@dataclass(frozen=True)
class CardSpec:
    id: str
    title: str
    short: str  # the card's name in the at-a-glance strip
    seed: str | None
    question: str
    thumbnail: tuple[tuple[str, str], ...]  # (experiment, figure stem), in order of preference
    run: tuple[RunOption, ...]
    experiments: tuple[ExperimentView, ...]
    answer: str | None = None  # a file under results/ whose lines answer the question (the card leads with them)

    @property
    def experiment_names(self) -> list[str]:
        return [view.name for view in self.experiments]

    def run_option(self, claim_id: str) -> RunOption | None:
        return next((option for option in self.run if option.matches(claim_id)), None)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScorecardsError(f"{where} must be a non-empty string, got {value!r}")
    return " ".join(value.split())


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ScorecardsError(f"{where} must be a list of column names, got {value!r}")
    return tuple(value)


def _keys(block: Any, allowed: set[str], required: set[str], where: str) -> dict:
    if not isinstance(block, dict):
        raise ScorecardsError(f"{where} must be a mapping, got {type(block).__name__}")
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise ScorecardsError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(block))
    if missing:
        raise ScorecardsError(f"{where}: missing keys {missing}")
    return block


def _card(block: Any, where: str) -> CardSpec:
    if isinstance(block, dict) and isinstance(block.get("id"), str):
        where = f"{where} (id {block['id']})"
    block = _keys(block, CARD_KEYS, CARD_KEYS - {"seed", "short", "answer"}, where)
    card_id = block["id"]
    if not isinstance(card_id, str) or not ID.match(card_id):
        raise ScorecardsError(f"{where}: id must be lower-case letters, digits, '_' or '-', got {card_id!r}")
    seed = block.get("seed")
    if seed is not None and not isinstance(seed, str):
        raise ScorecardsError(f"{where}: seed must be a quoted string such as \"002\" or null, got {seed!r}")
    experiments = block["experiments"]
    if not isinstance(experiments, dict) or not experiments:
        raise ScorecardsError(f"{where}: experiments must be a non-empty mapping experiment -> view")
    views = []
    for name, view in experiments.items():
        view = _keys(view, EXPERIMENT_KEYS, EXPERIMENT_KEYS, f"{where}: experiments.{name}")
        views.append(ExperimentView(name=str(name), title=_text(view["title"], f"{where}: experiments.{name}.title"),
                                    varies=_names(view["varies"], f"{where}: experiments.{name}.varies"),
                                    measured=_names(view["measured"], f"{where}: experiments.{name}.measured")))
    thumbnails = []
    for item in _names(block["thumbnail"], f"{where}: thumbnail"):
        experiment, _, stem = item.partition("/")
        if not stem or experiment not in experiments:
            raise ScorecardsError(f"{where}: thumbnail {item!r} must be '<experiment>/<figure stem>' with the "
                                  f"experiment one of the card's {sorted(experiments)}")
        thumbnails.append((experiment, stem))
    if not isinstance(block["run"], list):
        raise ScorecardsError(f"{where}: run must be a list of {{claims, preset, hardware, command}}")
    options = []
    for number, option in enumerate(block["run"], start=1):
        label = f"{where}: run[{number}]"
        option = _keys(option, RUN_KEYS, RUN_KEYS - {"claims"}, label)
        options.append(RunOption(preset=_text(option["preset"], f"{label}.preset"),
                                 hardware=_text(option["hardware"], f"{label}.hardware"),
                                 command=_text(option["command"], f"{label}.command"),
                                 claims=_names(option.get("claims", ["*"]), f"{label}.claims")))
    title = _text(block["title"], f"{where}: title")
    short = _text(block["short"], f"{where}: short") if "short" in block else title
    answer = _text(block["answer"], f"{where}: answer") if "answer" in block else None
    return CardSpec(id=card_id, title=title, short=short, seed=seed,
                    question=_text(block["question"], f"{where}: question"), thumbnail=tuple(thumbnails),
                    run=tuple(options), experiments=tuple(views), answer=answer)


def load_scorecards(path: str | os.PathLike) -> list[CardSpec]:
    """The cards of the data file, checked; a problem raises :class:`ScorecardsError`."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ScorecardsError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict) or set(data) != {"cards"} or not isinstance(data["cards"], list):
        raise ScorecardsError(f"{path}: must be a mapping with the one key 'cards' (a list)")
    cards = [_card(block, f"{path}: cards[{number}]") for number, block in enumerate(data["cards"], start=1)]
    seen: dict[str, str] = {}
    for card in cards:
        if card.id in seen:
            raise ScorecardsError(f"{path}: duplicate card id {card.id!r}")
        seen[card.id] = card.id
        for name in card.experiment_names:
            owner = next((other.id for other in cards if other is not card and name in other.experiment_names), None)
            if owner:
                raise ScorecardsError(f"{path}: experiment {name!r} is on cards {card.id!r} and {owner!r}; "
                                      "each experiment belongs to one card")
    return cards


# --------------------------------------------------------------------------- claims

def format_number(value: Any) -> str:
    """Four significant digits, integers whole; NaN or missing as an en dash."""
    if value is None or isinstance(value, str):
        return "–" if value in (None, "") else value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "–"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"


def format_pm(value: float, spread: float | None) -> str:
    """``value ± spread`` with the spread at two significant digits and the value to the
    same decimal place (``0.9675 ± 0.0039``, ``263 ± 12``); no spread: four digits."""
    decimals = spread_decimals(spread)
    if decimals is None or not math.isfinite(value):
        return format_number(value) + (" ± 0" if spread == 0 else "")
    return f"{value:.{decimals}f} ± {spread:.{decimals}f}"


def spread_decimals(spread: float | None) -> int | None:
    """Decimal places that show ``spread`` at two significant digits (None: no spread)."""
    if spread is None or not math.isfinite(spread) or spread <= 0:
        return None
    return min(8, max(0, 1 - math.floor(math.log10(spread))))


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _cell(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).split())


@dataclass
class ClaimView:
    """One row of claims.csv (or targets.csv) as a card lists it."""

    claim_id: str
    claim: str
    source: str
    verdict: str
    word: str
    symbol: str
    ours: str  # "0.9812 ± 0.0021" or "0.9812" or ""
    n_seeds: int
    interval: str  # "95% CI 0.976–0.986" or ""
    anchor: str
    requirement: str  # "≥ 0.975"
    note: str
    run_with: str  # from the claim itself
    run: RunOption | None = None  # from the data file, when the claim names none
    experiment: str = ""


_TO_RUN = re.compile(r"\s*To run it:.*$", re.S)


def claim_view(row: Mapping[str, Any], words: Mapping[str, str] = CLAIM_WORDS) -> ClaimView:
    """A claims.csv row for a card; an unknown verdict is shown as it is, never dropped."""
    verdict = _cell(row, "verdict") or "not_run"
    value, spread = _finite(row.get("measured_value")), _finite(row.get("spread"))
    ours = "" if value is None else format_pm(value, spread)
    low, high = _finite(row.get("ci_low")), _finite(row.get("ci_high"))
    interval = ""
    if low is not None and high is not None:
        decimals = spread_decimals(spread)
        bounds = [f"{b:.{decimals}f}" if decimals is not None else format_number(b) for b in (low, high)]
        interval = f"95% CI {bounds[0]} to {bounds[1]}"
    n_seeds = _finite(row.get("n_seeds"))
    rule, threshold = _cell(row, "rule"), _finite(row.get("threshold"))
    requirement = ""
    if rule in RULE_SYMBOLS and threshold is not None:
        requirement = f"{RULE_SYMBOLS[rule]} {format_number(threshold)}"
        if rule == "within":
            tolerance = _finite(row.get("tolerance"))  # claims.csv may not carry it
            requirement = (f"{format_number(threshold)} ± {format_number(tolerance)}" if tolerance is not None
                           else f"≈ {format_number(threshold)}, within tolerance")
    run_with = _cell(row, "run_with")
    note = _cell(row, "note")
    if run_with:  # the run box says it; the note need not repeat it
        note = _TO_RUN.sub("", note).strip()
    return ClaimView(claim_id=_cell(row, "claim_id"), claim=_cell(row, "claim"), source=_cell(row, "source"),
                     verdict=verdict, word=words.get(verdict, verdict), symbol=SYMBOLS.get(verdict, "•"),
                     ours=ours, n_seeds=int(n_seeds) if n_seeds is not None else 0, interval=interval,
                     anchor=format_number(row.get("anchor_value")), requirement=requirement, note=note,
                     run_with=run_with, experiment=_cell(row, "experiment"))


def claim_views(frame: pd.DataFrame | None, words: Mapping[str, str] = CLAIM_WORDS) -> list[ClaimView]:
    if frame is None or frame.empty:
        return []
    return [claim_view(row, words) for row in frame.astype(object).to_dict("records")]


def verdict_counts(views: Iterable[ClaimView]) -> dict[str, int]:
    """Count per verdict, the four known ones first (zeros kept), then any other."""
    counts = {verdict: 0 for verdict in VERDICTS}
    for view in views:
        counts[view.verdict] = counts.get(view.verdict, 0) + 1
    return counts


def by_source(views: Sequence[ClaimView]) -> list[tuple[str, list[tuple[int, ClaimView]]]]:
    """The claims grouped by their citation, in order of first appearance, each with its
    number in the card's list (a source cited by several claims is written once)."""
    groups: dict[str, list[tuple[int, ClaimView]]] = {}
    for number, view in enumerate(views, start=1):
        groups.setdefault(view.source, []).append((number, view))
    return list(groups.items())


@dataclass
class RunGroup:
    """Not-run claims that one command would run (numbers refer to the card's list)."""

    title: str  # "preset paper · one GPU"
    command: str
    numbers: list[int] = field(default_factory=list)


def split_run_with(text: str) -> tuple[str, str]:
    """A claim's ``run_with`` as (what, command): the command starts at ``snakemake``."""
    start = text.find("snakemake ")
    if start < 0:
        return text, ""
    what = text[:start].strip().rstrip(":;,").strip()
    return what or "the claim names this command", text[start:].strip().rstrip(".")


def run_groups(views: Sequence[ClaimView], card: CardSpec | None) -> list[RunGroup]:
    """The commands that would run a card's not_run claims, each with the claims it runs.

    A claim's own ``run_with`` wins; otherwise the first matching option of the card's
    ``run`` list; a claim matched by neither is grouped under "no command known".
    """
    groups: dict[tuple[str, str], RunGroup] = {}
    for number, view in enumerate(views, start=1):
        if view.verdict != "not_run":
            continue
        if view.run_with:
            key = split_run_with(view.run_with)
        else:
            option = card.run_option(view.claim_id) if card else None
            view.run = option
            key = ((f"preset {option.preset} · {option.hardware}", option.command) if option
                   else ("no command known", ""))
        group = groups.setdefault(key, RunGroup(title=key[0], command=key[1]))
        group.numbers.append(number)
    return list(groups.values())
