"""The rule graph: ``snakemake --rulegraph`` as dot source, drawn as inline SVG.

Graphviz renders it when ``dot`` is installed; otherwise a small layered layout drawn
here does, so the summary page never depends on a system package.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

NODE_RE = re.compile(r'^\s*(\w+)\s*\[\s*label\s*=\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)
EDGE_RE = re.compile(r"^\s*(\w+)\s*->\s*(\w+)", re.MULTILINE)


def rulegraph_dot(snakefile: str | os.PathLike, workdir: str | os.PathLike, config: Mapping[str, Any],
                  target: str = "all", timeout: float = 300) -> str:
    """Run ``snakemake --rulegraph`` on the workflow with exactly ``config``.

    The full (validated) config is handed over as a config file, so overrides given on
    the outer command line (``--config results_dir=...``) hold for the inner run too.
    """
    with tempfile.TemporaryDirectory(prefix="rgbench-rulegraph-") as tmp:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(dict(config)))
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
                   "--configfile", str(config_file), "--rulegraph", "--nolock", "--quiet", target]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"snakemake --rulegraph failed ({done.returncode}):\n{done.stderr[-4000:]}")
    start = done.stdout.find("digraph")
    if start < 0:
        raise RuntimeError(f"snakemake --rulegraph printed no graph:\n{done.stdout[-2000:]}")
    return done.stdout[start:]


def parse_dot(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Rule names and (upstream, downstream) edges of a Snakemake rule graph."""
    labels = {key: label.replace('\\"', '"') for key, label in NODE_RE.findall(text)}
    if not labels:
        raise ValueError("no nodes found in the rule graph")
    edges = []
    for source, target in EDGE_RE.findall(text):
        if source not in labels or target not in labels:
            raise ValueError(f"edge {source} -> {target} names an undeclared node")
        edges.append((labels[source], labels[target]))
    return list(dict.fromkeys(labels.values())), list(dict.fromkeys(edges))


def layers(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Longest-path layering (sources first), each layer ordered to follow its parents."""
    parents: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in edges:
        parents[target].append(source)
    depth: dict[str, int] = {}

    def visit(node: str, trail: frozenset = frozenset()) -> int:
        if node in trail:
            raise ValueError(f"the rule graph has a cycle through {node}")
        if node not in depth:
            depth[node] = 1 + max((visit(p, trail | {node}) for p in parents[node]), default=-1)
        return depth[node]

    for node in nodes:
        visit(node)
    result: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for node in nodes:
        result[depth[node]].append(node)
    # one barycentre pass keeps edges short without a full crossing minimisation
    position: dict[str, float] = {node: float(i) for i, node in enumerate(result[0])}
    for layer in result[1:]:
        layer.sort(key=lambda n: (sum(position[p] for p in parents[n]) / max(len(parents[n]), 1), n))
        position.update({node: float(i) for i, node in enumerate(layer)})
    return result


STAGE_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
                 "#ccb974", "#64b5cd"]


def stage_colours(nodes: list[str], stages: Mapping[str, str] | None) -> dict[str, str]:
    """Stage (experiment, data, report) -> colour, for the stages of these rules."""
    names = sorted(set((stages or {}).get(node, "other") for node in nodes))
    return {stage: STAGE_COLOURS[i % len(STAGE_COLOURS)] for i, stage in enumerate(names)}


def recolour_dot(text: str, stages: Mapping[str, str]) -> str:
    """Snakemake colours rules at random; colour each by its stage instead, as the legend says."""
    colour = stage_colours(parse_dot(text)[0], stages)

    def node(match: re.Match) -> str:
        line = match.group(0)
        label = NODE_RE.match(line).group(2)
        return re.sub(r'color\s*=\s*"[^"]*"', f'color = "{colour[stages.get(label, "other")]}"', line)

    return re.sub(r'^\s*\w+\s*\[\s*label\s*=.*$', node, text, flags=re.MULTILINE)


def layered_svg(nodes: list[str], edges: list[tuple[str, str]], stages: Mapping[str, str] | None = None) -> str:
    """A top-to-bottom SVG drawing of the graph, boxes coloured by stage (experiment)."""
    stages = dict(stages or {})
    colour = stage_colours(nodes, stages)
    stage_names = list(colour)
    char_w, box_h, gap_x, gap_y, margin = 7.2, 26, 14, 46, 10
    rows = layers(nodes, edges)
    width_of = {node: max(60.0, len(node) * char_w + 16) for node in nodes}
    row_widths = [sum(width_of[n] for n in row) + gap_x * (len(row) - 1) for row in rows]
    total_w = max(row_widths) + 2 * margin
    centre: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        x = margin + (total_w - 2 * margin - row_widths[r]) / 2
        y = margin + r * (box_h + gap_y)
        for node in row:
            centre[node] = (x + width_of[node] / 2, y + box_h / 2)
            x += width_of[node] + gap_x
    total_h = margin * 2 + len(rows) * box_h + (len(rows) - 1) * gap_y
    legend_h = 22
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="rulegraph" width="{total_w:.0f}" '
             f'height="{total_h + legend_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h + legend_h:.0f}" '
             f'font-family="sans-serif" font-size="12">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#999"/></marker></defs>']
    for source, target in edges:
        (x1, y1), (x2, y2) = centre[source], centre[target]
        y1, y2 = y1 + box_h / 2, y2 - box_h / 2
        mid = (y1 + y2) / 2
        parts.append(f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}" '
                     'fill="none" stroke="#999" stroke-width="1.3" marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = centre[node]
        w = width_of[node]
        fill = colour[stages.get(node, "other")]
        parts.append(f'<g><title>{html.escape(node)} ({html.escape(stages.get(node, "other"))})</title>'
                     f'<rect x="{x - w / 2:.1f}" y="{y - box_h / 2:.1f}" width="{w:.1f}" height="{box_h}" rx="6" '
                     f'fill="white" stroke="{fill}" stroke-width="2"/>'
                     f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{html.escape(node)}</text></g>')
    x = margin
    for stage in stage_names:
        parts.append(f'<rect x="{x:.1f}" y="{total_h + 4:.1f}" width="12" height="12" fill="{colour[stage]}"/>'
                     f'<text x="{x + 16:.1f}" y="{total_h + 14:.1f}">{html.escape(stage)}</text>')
        x += 16 + len(stage) * char_w + 18
    parts.append("</svg>")
    return "\n".join(parts)


def drop_rules(text: str, names: set[str]) -> str:
    """The dot source without the named rules and their edges.

    ``all`` only gathers the targets; its two dozen edges into one box hide the real
    structure of the pipeline, so the drawing leaves it out (the dot source keeps it).
    """
    keys = {key for key, label in NODE_RE.findall(text) if label in names}
    kept = []
    for line in text.splitlines():
        node, edge = NODE_RE.match(line), EDGE_RE.match(line)
        if (node and node.group(1) in keys) or (edge and {edge.group(1), edge.group(2)} & keys):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def render_svg(dot_text: str, stages: Mapping[str, str] | None = None, use_graphviz: bool = True,
               hide: set[str] = frozenset({"all"})) -> tuple[str, str]:
    """(svg, renderer): Graphviz's drawing when ``dot`` runs, else the built-in layout."""
    if hide and set(parse_dot(dot_text)[0]) - set(hide):
        dot_text = drop_rules(dot_text, set(hide))
    nodes, edges = parse_dot(dot_text)
    dot = shutil.which("dot") if use_graphviz else None
    if dot:
        done = subprocess.run([dot, "-Tsvg"], input=recolour_dot(dot_text, dict(stages or {})),
                              capture_output=True, text=True, timeout=120)
        if done.returncode == 0 and "<svg" in done.stdout:
            # drop the XML prolog and DOCTYPE: the SVG is inlined into an HTML page
            return done.stdout[done.stdout.index("<svg"):], "graphviz"
    return layered_svg(nodes, edges, stages), "built-in layout"
