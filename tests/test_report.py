"""The report stage on fake results: cost table, rule graph, summary page, table pages."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_png
from rgbench.summary.costs import collect_costs, read_benchmark, stage_of_rule, write_costs
from rgbench.summary.rulegraph import drop_rules, layered_svg, layers, parse_dot, recolour_dot, render_svg
from rgbench.summary.patterns import fill, wildcard_regex
from rgbench.summary.summary import build_summary_page, caption_reading, find_caption, format_cell, write_table_page

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_bench(path: Path, *rows: tuple) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{s}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n" for s, rss, cpu in rows]
    path.write_text(BENCH_HEADER + "".join(lines))


def write_metrics(results: Path, experiment: str, run: str, device: str, commit: str = "abc123") -> None:
    path = results / "runs" / experiment / run / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"experiment": experiment, "run_id": run, "params": {}, "seed": 0, "metrics": {},
                                "wall_seconds": 1.0, "device": device,
                                "versions": {"git_commit": commit}}))


@pytest.fixture()
def fake_results(tmp_path: Path) -> Path:
    """A results tree as two experiments, the data stage and the claims stage leave it."""
    results = tmp_path / "results"
    write_bench(results / "benchmarks" / "mnist_cache.tsv", (2.0, 40.5, 1.5))
    write_bench(results / "benchmarks" / "glonet_train" / "model-GloNet_depth-6_seed-0.tsv",
                (10.0, 300.0, 9.0), (12.0, 320.0, 11.0))  # two repeats: mean time, max memory
    write_bench(results / "benchmarks" / "glonet_train" / "model-MLP_depth-6_seed-0.tsv", (5.0, 250.0, 4.0))
    write_bench(results / "benchmarks" / "rgm_learn" / "protocol-fast.tsv", (7.0, "NA", 6.5))
    write_metrics(results, "glonet", "model-GloNet_depth-6_seed-0", "cpu:x86_64 x2")
    write_metrics(results, "glonet", "model-MLP_depth-6_seed-0", "cuda:NVIDIA H100")
    write_metrics(results, "rgm", "protocol-fast", "cpu:x86_64 x2", commit="def456")
    tables = results / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame({"model": ["GloNet", "MLP"], "depth": [6, 6], "test_accuracy": [0.9812345, 0.97],
                  "diverged": [False, True]}).to_csv(tables / "glonet.csv", index=False)
    pd.DataFrame({"protocol": ["fast"], "test_accuracy": [0.5]}).to_csv(tables / "rgm.csv", index=False)
    pd.DataFrame({"claim_id": ["glonet_depth6", "rgm_fast"], "source": ["seed 002", "seed 003"],
                  "claim": ["GloNet reaches about 98%", "RGM is fast"], "anchor_value": [0.98, 60.0],
                  "measured_value": [0.9812345, float("nan")], "config": ["default", "default"],
                  "verdict": ["reproduced", "not_run"], "note": ["", "missing row"]}
                 ).to_csv(tables / "claims.csv", index=False)
    for experiment, name, size in (("glonet", "accuracy", (9, 5)), ("glonet", "curves", (4, 3)), ("rgm", "samples", (6, 6))):
        figure = results / "figures" / experiment / f"{name}.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes(tiny_png(*size))
    return results


STAGES = {"mnist_cache": "data", "glonet_train": "glonet", "rgm_learn": "rgm", "report_page": "report"}


def test_read_benchmark_averages_repeats_and_keeps_missing_memory_missing(fake_results: Path) -> None:
    cost = read_benchmark(fake_results / "benchmarks" / "glonet_train" / "model-GloNet_depth-6_seed-0.tsv")
    assert cost == {"wall_s": 11.0, "cpu_s": 10.0, "peak_mem_mb": 320.0}
    assert math.isnan(read_benchmark(fake_results / "benchmarks" / "rgm_learn" / "protocol-fast.tsv")["peak_mem_mb"])


def test_read_benchmark_rejects_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not a Snakemake benchmark"):
        read_benchmark(path)


def test_cost_table_per_job_and_per_experiment(fake_results: Path, tmp_path: Path) -> None:
    jobs, summary = write_costs(fake_results, tmp_path / "costs.csv", tmp_path / "by_exp.csv",
                                rule_stages=STAGES, experiments=["glonet", "rgm"])
    assert len(jobs) == 4
    glonet = jobs[jobs.rule == "glonet_train"].set_index("job")
    assert glonet.loc["model-GloNet_depth-6_seed-0", "device"] == "cpu:x86_64 x2"
    assert glonet.loc["model-MLP_depth-6_seed-0", "device"] == "cuda:NVIDIA H100"
    assert jobs.set_index("rule").loc["mnist_cache", "device"] == ""  # data jobs record no device
    by = summary.set_index("experiment")
    assert list(by.index) == ["data", "glonet", "rgm", "all"]
    assert by.loc["glonet", "jobs"] == 2
    assert by.loc["glonet", "wall_s"] == pytest.approx(16.0)
    assert by.loc["glonet", "cpu_s"] == pytest.approx(14.0)
    assert by.loc["glonet", "peak_mem_mb"] == 320.0
    assert by.loc["glonet", "devices"] == "cpu:x86_64 x2; cuda:NVIDIA H100"
    assert math.isnan(by.loc["rgm", "peak_mem_mb"])  # never summed as 0 MB
    assert by.loc["all", "wall_s"] == pytest.approx(2 + 16 + 7)
    written = pd.read_csv(tmp_path / "costs.csv")
    assert list(written.columns) == ["experiment", "rule", "job", "wall_s", "cpu_s", "peak_mem_mb", "device", "benchmark"]


def test_rule_without_known_file_falls_back_to_the_longest_experiment_prefix() -> None:
    experiments = ["rgm", "spatial_rgm"]
    assert stage_of_rule("spatial_rgm_train", {}, experiments) == "spatial_rgm"
    assert stage_of_rule("rgm_learn", {}, experiments) == "rgm"
    assert stage_of_rule("rgmx", {}, experiments) == "other"
    assert stage_of_rule("rgm_learn", {"rgm_learn": "data"}, experiments) == "data"


def test_costs_of_an_empty_results_dir_are_empty(tmp_path: Path) -> None:
    jobs, summary = collect_costs(tmp_path)
    assert jobs.empty and summary.empty


DOT = """digraph snakemake_dag {
    graph[bgcolor=white, margin=0];
	0[label = "all", color = "0.00 0.6 0.85", style="rounded"];
	1[label = "mnist_cache", color = "0.27 0.6 0.85", style="rounded"];
	2[label = "glonet_train", color = "0.40 0.6 0.85", style="rounded"];
	3[label = "experiment_table", color = "0.47 0.6 0.85", style="rounded"];
	1 -> 2
	2 -> 3
	3 -> 0
	1 -> 0
}
"""


def test_parse_dot_and_layers() -> None:
    nodes, edges = parse_dot(DOT)
    assert nodes == ["all", "mnist_cache", "glonet_train", "experiment_table"]
    assert ("mnist_cache", "glonet_train") in edges and len(edges) == 4
    # longest path: all sits below experiment_table even though mnist_cache feeds it directly
    assert layers(nodes, edges) == [["mnist_cache"], ["glonet_train"], ["experiment_table"], ["all"]]


def test_parse_dot_errors() -> None:
    with pytest.raises(ValueError, match="no nodes"):
        parse_dot("digraph {}")
    with pytest.raises(ValueError, match="undeclared"):
        parse_dot('digraph {\n 0[label = "a"];\n 0 -> 7\n}')
    with pytest.raises(ValueError, match="cycle"):
        layers(["a", "b"], [("a", "b"), ("b", "a")])


def test_builtin_svg_draws_every_rule_and_edge_but_all() -> None:
    nodes, edges = parse_dot(drop_rules(DOT, {"all"}))
    assert nodes == ["mnist_cache", "glonet_train", "experiment_table"] and len(edges) == 2
    svg, renderer = render_svg(DOT, {"glonet_train": "glonet", "mnist_cache": "data"}, use_graphviz=False)
    assert renderer == "built-in layout"
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<rect") == len(nodes) + 3  # one box per rule, one legend swatch per stage
    assert svg.count('marker-end="url(#arrow)"') == len(edges)
    for node in nodes:
        assert f">{node}</text>" in svg
    assert ">all</text>" not in svg
    assert layered_svg(nodes, edges) == layered_svg(nodes, edges)  # deterministic
    # a graph that is nothing but the hidden rule is still drawn
    assert ">all</text>" in render_svg('digraph {\n 0[label = "all"];\n}', use_graphviz=False)[0]


def test_format_cell() -> None:
    assert format_cell(0.9812345) == "0.9812"
    assert format_cell(6.0) == "6"
    assert format_cell(float("nan")) == "–"
    assert format_cell(True) == "True"
    assert format_cell(1234567.0) == "1234567"


def test_wildcard_regex_and_caption_lookup(tmp_path: Path) -> None:
    pattern = "results/figures/glonet/{name,[a-z]+}_{depth}.png"
    match = wildcard_regex(pattern).match("results/figures/glonet/acc_6.png")
    assert match and match.groupdict() == {"name": "acc", "depth": "6"}
    assert wildcard_regex(pattern).match("results/figures/glonet/Acc_6.png") is None
    caption = tmp_path / "report" / "rgm" / "samples.rst"
    caption.parent.mkdir(parents=True)
    caption.write_text("x")
    found, wildcards = find_caption("res/figures/rgm/samples.png", "rgm", [], tmp_path)
    assert found == caption and wildcards == {}
    declared = tmp_path / "acc.rst"
    declared.write_text("x")
    found, wildcards = find_caption("results/figures/glonet/acc_6.png", "glonet",
                                    [[pattern, str(declared)]], tmp_path)
    assert found == declared and wildcards["depth"] == "6"


def test_caption_reading_is_the_first_sentence_in_plain_text() -> None:
    text = ("Test accuracy\n=============\n\n.. note:: ignored\n\n"
            "Test **accuracy** of ``GloNet`` at depth {{ snakemake.wildcards.depth }} on the "
            ":math:`10^4` test images (preset {{ snakemake.config['preset'] }}). The dashed line is "
            "the paper's value.\n")
    reading = caption_reading(text, {"depth": "6"}, {"preset": "smoke"})
    assert reading == "Test accuracy of GloNet at depth 6 on the 10^4 test images (preset smoke)."
    assert caption_reading("{{ snakemake.params.unknown.deeper }} Samples.") == "Samples."
    assert caption_reading("") == ""


def test_summary_page_is_self_contained_and_complete(fake_results: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "report" / "glonet").mkdir(parents=True)
    (repo / "report" / "glonet" / "accuracy.rst").write_text("Accuracy against depth. More text.\n")
    write_costs(fake_results, fake_results / "tables" / "costs.csv", fake_results / "tables" / "costs_by.csv",
                rule_stages=STAGES)
    (fake_results / "report").mkdir()
    (fake_results / "report" / "rulegraph.dot").write_text(DOT)
    figures = fake_results / "figures"
    experiments = {
        "glonet": {"table": fake_results / "tables" / "glonet.csv",
                   "figures": [figures / "glonet" / "accuracy.png", figures / "glonet" / "curves.png"]},
        "rgm": {"table": fake_results / "tables" / "rgm.csv",
                "figures": [figures / "rgm" / "samples.png", figures / "rgm" / "not_drawn.png"]},
    }
    output = fake_results / "report" / "index.html"
    info = build_summary_page(output, results_dir=fake_results, experiments=experiments,
                              claims_csv=fake_results / "tables" / "claims.csv",
                              costs_csv=fake_results / "tables" / "costs.csv",
                              costs_summary_csv=fake_results / "tables" / "costs_by.csv",
                              rulegraph_dot=fake_results / "report" / "rulegraph.dot", rule_stages=STAGES,
                              caption_patterns=[[str(figures / "rgm" / "{name}.png"), str(repo / "rgm.rst")]],
                              preset="smoke", repo_root=repo, use_graphviz=False)
    page = output.read_text()
    assert info["figures"] == 3 and info["claims"] and info["rulegraph"] == "built-in layout"
    assert info["missing"] == [str(figures / "rgm" / "not_drawn.png")]
    # claims come first, then the experiments in registry order, then graph and costs
    order = [page.index(f'id="{key}"') for key in ("claims", "exp-glonet", "exp-rgm", "rulegraph", "costs")]
    assert order == sorted(order)
    assert page.index('id="claims-table"') < page.index('id="table-glonet"')
    # every image is embedded, byte for byte; nothing refers to the network
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]) == (figures / "glonet" / "accuracy.png").read_bytes()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page
    # readings come from the caption files; the rgm caption named in the workflow does not exist
    assert "Accuracy against depth." in page and "More text" not in page
    assert page.count("(no caption)") == 2
    # table values are formatted, verdicts coloured, provenance shown
    assert ">0.9812<" in page and 'class="verdict-reproduced"' in page
    assert "reproduced: 1" in page and "not_run: 1" in page
    assert "Smoke preset" in page and "abc123" in page and "def456" in page
    assert "cuda:NVIDIA H100" in page  # the device of the glonet runs, in its section and the costs


def test_summary_page_without_claims_or_costs_still_builds(tmp_path: Path) -> None:
    output = tmp_path / "index.html"
    info = build_summary_page(output, results_dir=tmp_path, experiments={
        "glonet": {"table": tmp_path / "tables" / "glonet.csv", "figures": []}}, preset="default", repo_root=tmp_path)
    page = output.read_text()
    assert not info["claims"] and "No claims table was produced" in page
    assert "Not produced yet" in page and "Smoke preset" not in page
    assert "unknown (not a git checkout)" in page


def test_table_page(fake_results: Path, tmp_path: Path) -> None:
    rows = write_table_page(fake_results / "tables" / "claims.csv", tmp_path / "claims.html", title="Claims")
    page = (tmp_path / "claims.html").read_text()
    assert rows == 2
    assert page.count("<tr>") == 3 and "<title>Claims</title>" in page
    assert 'class="verdict-not_run"' in page


def test_device_comes_from_the_run_directory_the_rule_writes(fake_results: Path) -> None:
    # a rule without wildcards writing into runs/reference_classifier/main, and a rule
    # whose benchmark wildcards name the run directory
    write_bench(fake_results / "benchmarks" / "reference_classifier_train.tsv", (30.0, 500.0, 29.0))
    write_metrics(fake_results, "reference_classifier", "main", "cuda:NVIDIA H200")
    results = str(fake_results)
    rule_runs = {
        "reference_classifier_train": {"benchmark": f"{results}/benchmarks/reference_classifier_train.tsv",
                                       "run_dirs": [f"{results}/runs/reference_classifier/main"]},
        "glonet_train": {"benchmark": f"{results}/benchmarks/glonet_train/{{run_id}}.tsv",
                         "run_dirs": [f"{results}/runs/glonet/{{run_id}}"]},
        "rgm_learn": {"benchmark": f"{results}/benchmarks/rgm_learn/{{protocol}}.tsv", "run_dirs": []},
    }
    jobs, _ = collect_costs(fake_results, {**STAGES, "reference_classifier_train": "reference_classifier"},
                            rule_runs=rule_runs)
    device = jobs.set_index(["rule", "job"])["device"]
    assert device["reference_classifier_train", ""] == "cuda:NVIDIA H200"
    assert device["glonet_train", "model-MLP_depth-6_seed-0"] == "cuda:NVIDIA H100"
    # the workflow says this job writes no run directory: no device, not a guess by name
    assert device["rgm_learn", "protocol-fast"] == ""


def test_fill_pattern() -> None:
    assert fill("runs/{exp}/{run_id,[a-z]+}", {"exp": "rgm", "run_id": "main"}) == "runs/rgm/main"
    with pytest.raises(KeyError):
        fill("runs/{exp}", {})


def test_summary_tables_are_cut_at_max_table_rows(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    pd.DataFrame({"seed": range(25), "test_accuracy": [0.5] * 25}).to_csv(tmp_path / "tables" / "big.csv", index=False)
    build_summary_page(tmp_path / "index.html", results_dir=tmp_path, max_table_rows=10,
                       experiments={"big": {"table": tmp_path / "tables" / "big.csv", "figures": []}})
    page = (tmp_path / "index.html").read_text()
    section = page[page.index('id="table-big"'):page.index("</table>", page.index('id="table-big"'))]
    assert section.count("<tr>") == 11 and "first 10 of 25 rows" in page


def test_rules_are_coloured_by_stage() -> None:
    stages = {"mnist_cache": "data", "glonet_train": "glonet", "experiment_table": "report"}
    recoloured = recolour_dot(DOT, stages)
    colours = dict(re.findall(r'label = "(\w+)", color = "(#[0-9a-f]{6})"', recoloured))
    assert len(colours) == 4 and colours["glonet_train"] != colours["mnist_cache"]
    assert parse_dot(recoloured) == parse_dot(DOT)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_drawing_is_inline_svg() -> None:
    svg, renderer = render_svg(DOT, {"mnist_cache": "data"})
    assert renderer == "graphviz"
    assert svg.startswith("<svg") and "<?xml" not in svg and svg.count("<g id=\"node") == 3


def test_a_claim_reproduced_on_smoke_stops_the_page(fake_results: Path, tmp_path: Path) -> None:
    claims = pd.read_csv(fake_results / "tables" / "claims.csv")
    claims.loc[0, "config"] = "smoke"
    claims.to_csv(fake_results / "tables" / "claims.csv", index=False)
    with pytest.raises(ValueError, match=r"\['glonet_depth6'\] are marked reproduced on the smoke preset"):
        build_summary_page(tmp_path / "index.html", results_dir=fake_results, experiments={},
                           claims_csv=fake_results / "tables" / "claims.csv")
    assert not (tmp_path / "index.html").exists()
