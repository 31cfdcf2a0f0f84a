"""The human summary page ``report/index.html``: one self-contained HTML file.

Claims first, then one section per enabled experiment (table, figures, a one-line
reading of each figure taken from its report caption), the rule graph and the cost
table. Images are embedded as base64 data URIs and nothing is fetched from the
network, so the file can be mailed or opened from a USB stick.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import mimetypes
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import jinja2
import pandas as pd

from rgbench.io import read_json, write_text_atomic
from rgbench.summary.patterns import wildcard_regex
from rgbench.summary.rulegraph import parse_dot, render_svg, stage_colours

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_TABLE_ROWS = 400
VERDICTS = ("reproduced", "not_reproduced", "not_run")
CLAIM_COLUMNS = ("claim_id", "claim", "anchor_value", "measured_value", "config", "verdict", "note", "source")


@dataclass
class Figure:
    path: str
    name: str
    reading: str
    data_uri: str


@dataclass
class Section:
    name: str
    table: "HtmlTable | None"
    table_path: str
    figures: list[Figure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


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
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def html_table(frame: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> HtmlTable:
    shown = frame.head(max_rows)
    rows = [[format_cell(value) for value in record] for record in shown.astype(object).itertuples(index=False)]
    table = HtmlTable(columns=[str(c) for c in frame.columns], rows=rows, total_rows=len(frame))
    if "verdict" in table.columns:
        # verdict cells are coloured (reproduced / not_reproduced / not_run)
        index = table.columns.index("verdict")
        table.classes = [["verdict-" + row[index] if i == index else "" for i in range(len(row))] for row in rows]
    return table


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=True)


def data_uri(path: str | os.PathLike) -> str:
    mime = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    payload = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:{mime};base64,{payload}"


# --- figure captions ---------------------------------------------------------------

_ROLE = re.compile(r":[\w:+-]+:`([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^>]*>)?`_{1,2}")
_EMPH = re.compile(r"(\*\*|\*)(\S(?:.*?\S)?)\1")


def caption_reading(text: str, wildcards: Mapping[str, str] | None = None, config: Any = None) -> str:
    """The first sentence of a caption's first paragraph, as plain text.

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
        # skip rst titles, directives and comments: they are not a reading of the figure
        if not lines or lines[0].startswith(".."):
            continue
        if len(lines) == 2 and set(lines[1]) <= set("=-~^*#+'\"`:.") and lines[1]:
            continue
        paragraphs.append(" ".join(lines))
    if not paragraphs:
        return ""
    plain = _LINK.sub(r"\1", _LITERAL.sub(r"\1", _ROLE.sub(r"\1", paragraphs[0])))
    plain = _EMPH.sub(r"\2", plain)
    sentence = re.match(r"(.+?[.!?])(\s|$)", plain)
    return (sentence.group(1) if sentence else plain).strip()


def find_caption(figure: str, experiment: str, caption_patterns: Sequence[tuple[str, str]],
                 repo_root: str | os.PathLike) -> tuple[Path | None, dict[str, str]]:
    """The caption file declared for ``figure`` in the workflow, else ``report/<exp>/<stem>.rst``."""
    for pattern, caption in caption_patterns:
        match = wildcard_regex(pattern).match(figure)
        if match and Path(caption).exists():
            return Path(caption), match.groupdict()
    fallback = Path(repo_root) / "report" / experiment / (Path(figure).stem + ".rst")
    return (fallback if fallback.exists() else None), {}


# --- provenance --------------------------------------------------------------------

def git_describe(repo_root: str | os.PathLike) -> str:
    """Short commit of the checkout, with ``+dirty`` when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo_root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root,
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def run_provenance(results_dir: str | os.PathLike, experiment: str) -> tuple[list[str], list[str]]:
    """Devices and git commits recorded in an experiment's metrics.json files."""
    devices, commits = set(), set()
    for path in Path(results_dir, "runs", experiment).glob("**/metrics.json"):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        if record.get("device"):
            devices.add(str(record["device"]))
        commit = (record.get("versions") or {}).get("git_commit")
        if commit:
            commits.add(str(commit))
    return sorted(devices), sorted(commits)


# --- the page ----------------------------------------------------------------------

def _claims(claims_csv: str | os.PathLike | None, max_rows: int) -> tuple[HtmlTable | None, dict[str, int]]:
    if not claims_csv or not Path(claims_csv).exists():
        return None, {}
    frame = read_table(claims_csv)
    if {"config", "verdict"} <= set(frame.columns):
        wrong = frame[(frame["config"] == "smoke") & (frame["verdict"] == "reproduced")]
        if len(wrong):
            # the smoke preset checks plumbing; the page must never present it as evidence
            raise ValueError(f"{claims_csv}: claims {list(wrong.get('claim_id', wrong.index))} are marked "
                             "reproduced on the smoke preset")
    # the contract's columns first, in the contract's order; the claim's bookkeeping after
    first = [column for column in CLAIM_COLUMNS if column in frame.columns]
    frame = frame[first + [column for column in frame.columns if column not in first]]
    table = html_table(frame, max_rows)
    counts = frame["verdict"].value_counts().to_dict() if "verdict" in frame.columns else {}
    return table, {verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS}


def build_summary_page(
    output: str | os.PathLike,
    *,
    results_dir: str | os.PathLike,
    experiments: Mapping[str, Mapping[str, Any]],
    claims_csv: str | os.PathLike | None = None,
    costs_csv: str | os.PathLike | None = None,
    costs_summary_csv: str | os.PathLike | None = None,
    rulegraph_dot: str | os.PathLike | None = None,
    rule_stages: Mapping[str, str] | None = None,
    caption_patterns: Sequence[tuple[str, str]] = (),
    preset: str = "custom",
    repo_root: str | os.PathLike = ".",
    config: Any = None,
    use_graphviz: bool = True,
    max_table_rows: int = MAX_TABLE_ROWS,
) -> dict[str, Any]:
    """Render the summary page; return a small description of what it holds.

    ``experiments`` maps each enabled experiment to ``{"table": csv path, "figures":
    [png paths]}``. A table or figure that does not exist is listed as missing in its
    section instead of failing the page: the page is how one finds out what is missing.
    """
    results_dir = str(results_dir)
    sections = []
    for name, spec in experiments.items():
        table_path = str(spec["table"])
        section = Section(name=name, table=None, table_path=table_path)
        if Path(table_path).exists():
            section.table = html_table(read_table(table_path), max_table_rows)
        else:
            section.missing.append(table_path)
        for figure in spec.get("figures", []):
            figure = str(figure)
            if not Path(figure).exists():
                section.missing.append(figure)
                continue
            caption, wildcards = find_caption(figure, name, caption_patterns, repo_root)
            reading = caption_reading(caption.read_text(encoding="utf-8"), wildcards, config) if caption else ""
            section.figures.append(Figure(path=os.path.relpath(figure, results_dir), name=Path(figure).stem,
                                          reading=reading or "(no caption)", data_uri=data_uri(figure)))
        section.devices, _ = run_provenance(results_dir, name)
        sections.append(section)

    claims, verdict_counts = _claims(claims_csv, max_table_rows)
    costs = html_table(read_table(costs_csv), max_table_rows) if costs_csv and Path(costs_csv).exists() else None
    cost_summary = (html_table(read_table(costs_summary_csv), max_table_rows)
                    if costs_summary_csv and Path(costs_summary_csv).exists() else None)

    graph_svg, graph_renderer, dot_source, graph_legend = "", "", "", {}
    if rulegraph_dot and Path(rulegraph_dot).exists():
        dot_source = Path(rulegraph_dot).read_text()
        graph_svg, graph_renderer = render_svg(dot_source, rule_stages, use_graphviz=use_graphviz)
        if graph_renderer == "graphviz":  # the built-in drawing carries its own legend
            graph_legend = stage_colours(parse_dot(dot_source)[0], rule_stages)

    result_commits = sorted({c for name in experiments for c in run_provenance(results_dir, name)[1]})
    page = template_env().get_template("index.html.j2").render(
        preset=preset,
        commit=git_describe(repo_root),
        result_commits=result_commits,
        built=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        claims=claims,
        claims_path=os.path.relpath(claims_csv, results_dir) if claims_csv else "tables/claims.csv",
        verdict_counts=verdict_counts,
        sections=sections,
        graph_svg=graph_svg,
        graph_renderer=graph_renderer,
        graph_legend=graph_legend,
        dot_source=dot_source,
        costs=costs,
        cost_summary=cost_summary,
        smoke=(preset == "smoke"),
    )
    write_text_atomic(output, page)
    return {"bytes": len(page.encode("utf-8")), "experiments": [s.name for s in sections],
            "figures": sum(len(s.figures) for s in sections),
            "missing": [m for s in sections for m in s.missing], "claims": claims is not None,
            "rulegraph": graph_renderer}


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["basename"] = os.path.basename
    return env


def write_table_page(csv: str | os.PathLike, output: str | os.PathLike, title: str) -> int:
    """One table as a standalone HTML page: what Snakemake's report shows for a table."""
    frame = read_table(csv)
    page = template_env().get_template("table_page.html.j2").render(
        title=title, source=Path(csv).name, table=html_table(frame), table_id="table")
    write_text_atomic(output, page)
    return len(frame)
