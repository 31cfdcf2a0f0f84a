"""The human summary page ``report/index.html``: a reproduction scorecard in one file.

First the scorecards: one card per seed document (and one for the reference
classifier), each with the seed's question, its published claims with verdict badges
and our number beside the anchor, what would run the claims that did not run, and one
thumbnail figure. Then one section per experiment (figures with their captions, a
compact table of what varies and what is measured, the full table folded away), the
project's own targets apart from the claims, and how the results were produced.

What the page knows about each experiment beyond the run's files lives in the data
file ``report/scorecards.yaml`` (:mod:`rgbench.summary.scorecards`). Figures, captions,
tables and claims come from what the workflow hands over; a listed figure or column
that a run did not produce is named as missing, never an error. Images are embedded as
base64 data URIs and nothing is fetched from the network, so the file can be mailed.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import jinja2
import pandas as pd

from rgbench.io import write_text_atomic
from rgbench.summary.compact import CompactTable, compact_table
from rgbench.summary.costs import phase_shares
from rgbench.summary.images import data_uri, image_size, thumbnail_uri
from rgbench.summary.paper_cost import paper_cost_sentence, paper_totals
from rgbench.summary.patterns import wildcard_regex
from rgbench.summary.provenance import (DagTime, dag_time, format_seconds, git_describe, machine_description,
                                        reproduce_command, run_records)
from rgbench.summary.rulegraph import parse_dot, render_svg, stage_colours
from rgbench.summary.scorecards import (CLAIM_WORDS, SYMBOLS, TARGET_WORDS, VERDICTS, CardSpec, ClaimView,
                                        ExperimentView, RunGroup, by_source, claim_views, format_number, load_scorecards,
                                        run_groups, verdict_counts)

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_TABLE_ROWS = 400
THUMBNAIL_PX = 560
CLAIM_COLUMNS = ("claim_id", "verdict", "claim", "measured_value", "spread", "n_seeds", "anchor_value", "source",
                 "note")


@dataclass
class HtmlTable:
    columns: list[str]
    rows: list[list[str]]
    total_rows: int
    classes: list[list[str]] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.total_rows > len(self.rows)


def format_cell(value: Any) -> str:
    """Numbers at four significant digits (integers whole), NaN as an en dash."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return format_number(value)


def html_table(frame: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> HtmlTable:
    shown = frame.head(max_rows)
    rows = [[format_cell(value) for value in record] for record in shown.astype(object).itertuples(index=False)]
    table = HtmlTable(columns=[str(c) for c in frame.columns], rows=rows, total_rows=len(frame))
    if "verdict" in table.columns:
        index = table.columns.index("verdict")
        table.classes = [["v-" + row[index] if i == index else "" for i in range(len(row))] for row in rows]
    return table


def read_table(path: str | os.PathLike | None) -> pd.DataFrame | None:
    """A CSV table, or None when it does not exist; an empty file reads as no rows."""
    if not path or not Path(path).exists():
        return None
    try:
        return pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


# --- figure captions ---------------------------------------------------------------

_ROLE = re.compile(r":[\w:+-]+:`([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^>]*>)?`_{1,2}")
_EMPH = re.compile(r"(\*\*|\*)(\S(?:.*?\S)?)\1")


def caption_paragraphs(text: str, wildcards: Mapping[str, str] | None = None, config: Any = None) -> list[str]:
    """A caption's paragraphs as plain text (rst titles, directives and markup removed).

    Captions are Jinja templates for Snakemake's report; they are rendered here with
    the figure's wildcards and the config, and anything else they reference reads empty.
    """
    try:
        env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
        context = SimpleNamespace(wildcards=SimpleNamespace(**(wildcards or {})), config=config or {},
                                  params=SimpleNamespace(), input=[], output=[])
        text = env.from_string(text).render(snakemake=context, categories={}, files={})
    except jinja2.TemplateError:
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", text, flags=re.S)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines()]
        if not lines or lines[0].startswith(".."):
            continue
        if len(lines) == 2 and set(lines[1]) <= set("=-~^*#+'\"`:.") and lines[1]:
            continue
        plain = _LINK.sub(r"\1", _LITERAL.sub(r"\1", _ROLE.sub(r"\1", " ".join(lines))))
        paragraphs.append(" ".join(_EMPH.sub(r"\2", plain).split()))
    return [p for p in paragraphs if p]


def find_caption(figure: str, experiment: str, caption_patterns: Sequence[tuple[str, str]],
                 repo_root: str | os.PathLike) -> tuple[Path | None, dict[str, str]]:
    """The caption file declared for ``figure`` in the workflow, else ``report/<exp>/<stem>.rst``."""
    for pattern, caption in caption_patterns:
        match = wildcard_regex(pattern).match(figure)
        if match and Path(caption).exists():
            return Path(caption), match.groupdict()
    fallback = Path(repo_root) / "report" / experiment / (Path(figure).stem + ".rst")
    return (fallback if fallback.exists() else None), {}


# --- the page's parts --------------------------------------------------------------

@dataclass
class Figure:
    experiment: str
    name: str
    path: str  # relative to the results directory
    file: str  # as the workflow names it
    anchor: str
    caption: list[str]
    data_uri: str
    width: int
    height: int


@dataclass
class Section:
    """One experiment: figures first, then the compact table, the full table, the CSV."""

    name: str
    title: str
    card_id: str
    figures: list[Figure] = field(default_factory=list)
    missing_figures: list[str] = field(default_factory=list)
    compact: CompactTable | None = None
    full: HtmlTable | None = None
    table_href: str = ""
    table_name: str = ""
    table_missing: bool = False
    devices: list[str] = field(default_factory=list)


@dataclass
class Thumbnail:
    uri: str
    width: int
    height: int
    alt: str
    anchor: str
    caption: str


@dataclass
class Card:
    id: str
    title: str
    short: str
    seed: str | None
    question: str
    claims: list[ClaimView]
    sources: list[tuple[str, list[tuple[int, ClaimView]]]]
    counts: dict[str, int]
    runs: list[RunGroup]
    thumbnail: Thumbnail | None
    thumbnail_wanted: list[str]
    sections: list[tuple[str, str]]  # (anchor, title) of its experiment sections
    disabled: list[str]  # its experiments this config does not run
    targets: dict[str, int]
    answer: list[str] = field(default_factory=list)  # the measured answer the card leads with
    answer_missing: str = ""  # the answer file the card names, when the run has not written it


@dataclass
class TargetGroup:
    card_id: str
    title: str
    targets: list[ClaimView]


def _figure(path: str, experiment: str, results_dir: str, caption_patterns: Sequence[tuple[str, str]],
            repo_root: str | os.PathLike, config: Any) -> Figure:
    caption_file, wildcards = find_caption(path, experiment, caption_patterns, repo_root)
    caption = caption_paragraphs(caption_file.read_text(encoding="utf-8"), wildcards, config) if caption_file else []
    width, height = image_size(path)
    stem = Path(path).stem
    return Figure(experiment=experiment, name=stem, path=os.path.relpath(path, results_dir), file=path,
                  anchor=f"fig-{experiment}-{stem}", caption=caption, data_uri=data_uri(path), width=width,
                  height=height)


def _section(name: str, view: ExperimentView, card_id: str, spec: Mapping[str, Any], results_dir: str,
             page_dir: Path, caption_patterns: Sequence[tuple[str, str]], repo_root: str | os.PathLike, config: Any,
             max_rows: int) -> Section:
    section = Section(name=name, title=view.title, card_id=card_id)
    for figure in map(str, spec.get("figures", [])):
        if Path(figure).exists():
            section.figures.append(_figure(figure, name, results_dir, caption_patterns, repo_root, config))
        else:
            section.missing_figures.append(os.path.relpath(figure, results_dir))
    table_path = str(spec.get("table", ""))
    section.table_name = os.path.relpath(table_path, results_dir) if table_path else f"tables/{name}.csv"
    frame = read_table(table_path)
    if frame is None:
        section.table_missing = True
    else:
        section.table_href = os.path.relpath(table_path, page_dir)
        section.compact = compact_table(frame, view.varies, view.measured)
        section.full = html_table(frame, max_rows)
    section.devices = sorted(run_records(results_dir, [name]).devices)
    return section


def _thumbnail(spec: CardSpec, sections: Mapping[str, Section], width: int) -> Thumbnail | None:
    """The first of the card's thumbnail candidates that the run produced, downscaled."""
    for experiment, stem in spec.thumbnail:
        section = sections.get(experiment)
        figure = next((f for f in section.figures if f.name == stem), None) if section else None
        if figure is None:
            continue
        uri, w, h = thumbnail_uri(figure.file, width)
        return Thumbnail(uri=uri, width=w, height=h, alt=f"{spec.title}: {stem.replace('_', ' ')}",
                         anchor=figure.anchor, caption=figure.caption[0] if figure.caption else "")
    return None


def _other_card(experiments: list[str]) -> CardSpec:
    views = tuple(ExperimentView(name=name, title=name, varies=(), measured=()) for name in experiments)
    return CardSpec(id="other", title="Other experiments", short="Other", seed=None,
                    question="Experiments that report/scorecards.yaml does not place on a card yet.",
                    thumbnail=(), run=(), experiments=views)


def _experiment_of(view: ClaimView, fallback_prefixes: Sequence[str]) -> str:
    """A claim's experiment: its ``experiment`` column, else the longest id prefix that names one."""
    if view.experiment:
        return view.experiment
    matches = [name for name in fallback_prefixes if view.claim_id.startswith(name + "_")]
    return max(matches, key=len) if matches else ""


def _smoke_guard(claims: pd.DataFrame | None, preset: str, path: Any) -> None:
    """The smoke preset checks plumbing: a claim reproduced on it means a broken protocol."""
    if claims is None or "verdict" not in claims.columns:
        return
    config = claims["config"].astype(str) if "config" in claims.columns else pd.Series("", index=claims.index)
    on_smoke = (config.str.strip() == "smoke") | config.str.startswith("preset smoke") | (preset == "smoke")
    wrong = claims[on_smoke & (claims["verdict"] == "reproduced")]
    if len(wrong):
        raise ValueError(f"{path}: claims {list(wrong.get('claim_id', wrong.index))} are marked "
                         "reproduced on the smoke preset")


def _dag_text(timing: DagTime | None) -> dict[str, str] | None:
    if timing is None:
        return None
    return {"busy": format_seconds(timing.busy_s), "span": format_seconds(timing.span_s),
            "cpu": format_seconds(timing.cpu_s), "job_wall": format_seconds(timing.job_wall_s),
            "jobs": str(timing.jobs), "first": timing.first_start, "last": timing.last_end,
            "several": "yes" if timing.several_sittings else ""}


def _answer(spec: CardSpec, results_dir: str) -> dict[str, Any]:
    """A card's answer lines from the file its spec names (a pipeline output), or the
    name of that file when it is missing."""
    if not spec.answer:
        return {}
    path = Path(results_dir) / spec.answer
    if not path.exists():
        return {"answer_missing": spec.answer}
    return {"answer": [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]}


def build_summary_page(
    output: str | os.PathLike,
    *,
    results_dir: str | os.PathLike,
    experiments: Mapping[str, Mapping[str, Any]],
    scorecards: str | os.PathLike | None = None,
    claims_csv: str | os.PathLike | None = None,
    targets_csv: str | os.PathLike | None = None,
    costs_csv: str | os.PathLike | None = None,
    costs_summary_csv: str | os.PathLike | None = None,
    paper_cost_csv: str | os.PathLike | None = None,
    rulegraph_dot: str | os.PathLike | None = None,
    rule_stages: Mapping[str, str] | None = None,
    caption_patterns: Sequence[tuple[str, str]] = (),
    preset: str = "custom",
    repo_root: str | os.PathLike = ".",
    config: Any = None,
    use_graphviz: bool = True,
    max_table_rows: int = MAX_TABLE_ROWS,
    thumbnail_px: int = THUMBNAIL_PX,
) -> dict[str, Any]:
    """Render the summary page; return a small description of what it holds.

    ``experiments`` maps each enabled experiment to ``{"table": csv path, "figures":
    [png paths]}``; ``scorecards`` is the data file (None: one plain card per
    experiment). A table or figure that does not exist is listed as missing instead of
    failing the page: the page is how one finds out what is missing.
    """
    results_dir = str(results_dir)
    page_dir = Path(output).resolve().parent
    specs = load_scorecards(scorecards) if scorecards else []
    claims_frame, targets_frame = read_table(claims_csv), read_table(targets_csv)
    _smoke_guard(claims_frame, preset, claims_csv)
    claims = claim_views(claims_frame)
    targets = claim_views(targets_frame, TARGET_WORDS)

    # every experiment on exactly one card; those the data file does not know get their own
    on_cards = {name for spec in specs for name in spec.experiment_names}
    known = list(dict.fromkeys([*on_cards, *experiments]))
    stray = sorted({_experiment_of(c, known) for c in [*claims, *targets]} - on_cards - {""}) + \
        [name for name in experiments if name not in on_cards]
    stray = list(dict.fromkeys(stray))
    unplaced = [c for c in [*claims, *targets] if not _experiment_of(c, known)]
    if stray or unplaced:
        specs = [*specs, _other_card(stray)]
    card_of = {name: spec.id for spec in specs for name in spec.experiment_names}

    sections: dict[str, Section] = {}
    for spec in specs:
        for view in spec.experiments:
            if view.name not in experiments:
                continue
            section = _section(view.name, view, spec.id, experiments[view.name], results_dir, page_dir,
                               caption_patterns, repo_root, config, max_table_rows)
            sections[view.name] = section

    cards = []
    for spec in specs:
        mine = [c for c in claims if card_of.get(_experiment_of(c, known), "other") == spec.id]
        my_targets = [t for t in targets if card_of.get(_experiment_of(t, known), "other") == spec.id]
        thumbnail = _thumbnail(spec, sections, thumbnail_px)
        cards.append(Card(
            id=spec.id, title=spec.title, short=spec.short, seed=spec.seed, question=spec.question, claims=mine, sources=by_source(mine),
            counts=verdict_counts(mine), runs=run_groups(mine, spec), thumbnail=thumbnail,
            thumbnail_wanted=[f"{e}/{s}" for e, s in spec.thumbnail],
            sections=[(f"exp-{name}", sections[name].title) for name in spec.experiment_names if name in sections],
            disabled=[name for name in spec.experiment_names if name not in experiments],
            targets=verdict_counts(my_targets), **_answer(spec, results_dir)))
    target_groups = [TargetGroup(card_id=card.id, title=card.title,
                                 targets=[t for t in targets
                                          if card_of.get(_experiment_of(t, known), "other") == card.id])
                     for card in cards]
    target_groups = [group for group in target_groups if group.targets]

    costs_frame, summary_frame = read_table(costs_csv), read_table(costs_summary_csv)
    costs = html_table(costs_frame, max_table_rows) if costs_frame is not None else None
    shares = phase_shares(costs_frame) if costs_frame is not None else None
    phases_text = ", ".join(f"{column.removesuffix('_s')} {100 * share:.0f}%" for column, share in shares.items()
                            ) if shares else ""
    cost_summary = html_table(summary_frame, max_table_rows) if summary_frame is not None else None
    paper_frame = read_table(paper_cost_csv)
    paper_cost = html_table(paper_frame, max_table_rows) if paper_frame is not None else None
    paper_totals_text = paper_cost_sentence(paper_totals(paper_frame)) if paper_frame is not None else ""

    graph_svg, graph_renderer, dot_source, graph_legend = "", "", "", {}
    if rulegraph_dot and Path(rulegraph_dot).exists():
        dot_source = Path(rulegraph_dot).read_text()
        graph_svg, graph_renderer = render_svg(dot_source, rule_stages, use_graphviz=use_graphviz)
        if graph_renderer == "graphviz":  # the built-in drawing carries its own legend
            graph_legend = stage_colours(parse_dot(dot_source)[0], rule_stages)

    records = run_records(results_dir, experiments)
    claims_table = None
    if claims_frame is not None and not claims_frame.empty:
        first = [c for c in CLAIM_COLUMNS if c in claims_frame.columns]
        claims_table = html_table(claims_frame[first + [c for c in claims_frame.columns if c not in first]],
                                  max_table_rows)
    page = template_env().get_template("index.html.j2").render(
        preset=preset,
        commit=git_describe(repo_root),
        result_commits=records.commits,
        built=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cards=cards,
        counts=verdict_counts(claims),
        n_claims=len(claims),
        claims_found=claims_frame is not None,
        claims_table=claims_table,
        claims_href=os.path.relpath(claims_csv, page_dir) if claims_csv else "",
        target_groups=target_groups,
        targets_found=targets_frame is not None,
        targets_href=os.path.relpath(targets_csv, page_dir) if targets_csv else "",
        target_counts=verdict_counts(targets),
        sections=[sections[name] for spec in specs for name in spec.experiment_names if name in sections],
        words=CLAIM_WORDS,
        target_words=TARGET_WORDS,
        symbols=SYMBOLS,
        verdicts=VERDICTS,
        devices=records.devices.most_common(),
        n_runs=records.runs,
        machine=machine_description(),
        dag=_dag_text(dag_time(costs_frame)),
        command=reproduce_command(config, repo_root, preset),
        graph_svg=graph_svg,
        graph_renderer=graph_renderer,
        graph_legend=graph_legend,
        dot_source=dot_source,
        costs=costs,
        phases_text=phases_text,
        cost_summary=cost_summary,
        paper_cost=paper_cost,
        paper_totals=paper_totals_text,
        smoke=(preset == "smoke"),
    )
    write_text_atomic(output, page)
    return {"bytes": len(page.encode("utf-8")), "cards": [card.id for card in cards],
            "experiments": list(sections), "figures": sum(len(s.figures) for s in sections.values()),
            "thumbnails": sum(card.thumbnail is not None for card in cards),
            "missing": [m for s in sections.values() for m in s.missing_figures]
            + [s.table_name for s in sections.values() if s.table_missing],
            "claims": len(claims), "targets": len(targets), "rulegraph": graph_renderer}


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["basename"] = os.path.basename
    return env


def write_table_page(csv: str | os.PathLike, output: str | os.PathLike, title: str) -> int:
    """One table as a standalone HTML page: what Snakemake's report shows for a table."""
    frame = read_table(csv)
    if frame is None:
        raise FileNotFoundError(csv)
    page = template_env().get_template("table_page.html.j2").render(
        title=title, source=Path(csv).name, table=html_table(frame), table_id="table")
    write_text_atomic(output, page)
    return len(frame)
