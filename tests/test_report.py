"""The report stage on hand-made results: cost table, rule graph, the scorecard page
(every verdict, targets apart, graceful gaps), table pages and the report's labels."""

from __future__ import annotations

import ast
import base64
import io
import json
import math
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from helpers import tiny_png
from rgbench.summary.compact import compact_table
from rgbench.summary.costs import collect_costs, read_benchmark, stage_of_rule, write_costs
from rgbench.summary.images import image_size, thumbnail_uri
from rgbench.summary.patterns import fill, wildcard_regex
from rgbench.summary.provenance import dag_time, format_seconds, reproduce_command
from rgbench.summary.rulegraph import drop_rules, layered_svg, layers, parse_dot, recolour_dot, render_svg
from rgbench.summary.scorecards import (TARGET_WORDS, ScorecardsError, claim_views, format_pm, load_scorecards,
                                        run_groups, split_run_with)
from rgbench.summary.summary import build_summary_page, caption_paragraphs, find_caption, write_table_page

ROOT = Path(__file__).resolve().parents[1]

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
    assert cost == {"wall_s": 11.0, "cpu_s": 10.0, "peak_mem_mb": 320.0, "elapsed_s": 22.0}
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
    assert list(written.columns) == ["experiment", "rule", "job", "wall_s", "cpu_s", "peak_mem_mb", "startup_s",
                                     "load_s", "compile_s", "compute_s", "write_s", "other_s", "device",
                                     "started", "finished", "benchmark"]
    assert written["startup_s"].isna().all()  # these fake jobs wrote no phases: unknown, not 0 s


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


def test_captions_become_plain_paragraphs() -> None:
    text = ("Test accuracy\n=============\n\n.. note:: ignored\n\n"
            "Test **accuracy** of ``GloNet`` at depth {{ snakemake.wildcards.depth }} on the\n"
            ":math:`10^4` test images (preset {{ snakemake.config['preset'] }}).\n\n"
            "The dashed line is `the paper <https://example.org>`_'s value.\n")
    assert caption_paragraphs(text, {"depth": "6"}, {"preset": "smoke"}) == [
        "Test accuracy of GloNet at depth 6 on the 10^4 test images (preset smoke).",
        "The dashed line is the paper's value."]
    assert caption_paragraphs("{{ snakemake.params.unknown.deeper }} Samples.") == ["Samples."]
    assert caption_paragraphs("Bad {% if %} template {{ x }}.") == ["Bad template ."]  # markup dropped, text kept
    assert caption_paragraphs("") == []


def test_table_page(fake_results: Path, tmp_path: Path) -> None:
    rows = write_table_page(fake_results / "tables" / "claims.csv", tmp_path / "claims.html", title="Claims")
    page = (tmp_path / "claims.html").read_text()
    assert rows == 2
    assert page.count("<tr>") == 3 and "<title>Claims</title>" in page
    assert 'class="v-not_run"' in page


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




# --------------------------------------------------------------------------- the scorecard page

SCORECARDS = """
cards:
  - id: glonet
    title: GloNet depth study
    short: GloNet 002
    seed: "002"
    question: Does GloNet keep its accuracy at every depth?
    thumbnail: [glonet/accuracy_vs_depth]
    run:
      - claims: ["glonet_notebook_*"]
        preset: default
        hardware: 2 CPU cores
        command: snakemake --cores all
      - preset: paper
        hardware: one GPU
        command: snakemake --configfile config/paper.yaml --profile profiles/slurm
    experiments:
      glonet:
        title: GloNet against depth
        varies: [model, depth, width_not_yet]
        measured: [test_accuracy, diverged, usage_not_yet]
  - id: rgm
    title: Renormalising generative model
    seed: "000"
    question: Does the RGM classify held-out digits?
    thumbnail: [rgm/not_drawn_yet]
    run: []
    experiments:
      rgm: {title: RGM on MNIST, varies: [protocol], measured: [test_accuracy]}
  - id: potts
    title: Potts EBM
    seed: "003"
    question: Does the Potts model beat independent pixels?
    thumbnail: [potts_ebm/samples]
    run: []
    experiments:
      potts_ebm: {title: Potts EBMs, varies: [model], measured: [test_nll_nats]}
"""

CLAIM_ROWS = [
    # claim_id, experiment, verdict, measured, spread, n, ci_low, ci_high, note, run_with
    ("glonet_seed_depth6", "glonet", "reproduced", 0.9812, 0.0021, 3, 0.9760, 0.9864, "", ""),
    ("glonet_seed_mlp_depth50", "glonet", "not_reproduced", 0.9012, 0.0121, 3, 0.8711, 0.9313,
     "failed runs count against the claim: run model-MLP_depth-50_seed-1 diverged", ""),
    ("glonet_seed_depth24", "glonet", "inconclusive", 0.9771, 0.0040, 3, 0.9672, 0.9870, "", ""),
    ("glonet_seed_depth200", "glonet", "not_run", None, None, 0, None, None,
     "no run matches the claim's protocol: epochs = 3 (the claim needs epochs = 50).", ""),
    ("glonet_notebook_depth30", "glonet", "not_run", 0.93, None, 1, None, None,
     "1 seed(s); the claim is judged on >= 3 seeds so that seed noise is known.", ""),
    ("rgm_paper_slice", "rgm", "not_run", None, None, 0, None, None,
     "no run matches the claim's protocol: n_train = 500 (the claim needs n_train = 10000). To run it: the "
     "default preset: snakemake --cores all.", "the default preset: snakemake --cores all"),
    ("ghost_claim", "ghost", "not_run", None, None, 0, None, None, "experiment ghost is disabled in this config.", ""),
]


def claims_frame(rows=CLAIM_ROWS) -> pd.DataFrame:
    records = []
    for claim_id, experiment, verdict, value, spread, n, low, high, note, run_with in rows:
        records.append({"claim_id": claim_id, "source": f"Source of {claim_id.split('_')[1]}",
                        "claim": f"Claim text of {claim_id}", "anchor_value": 0.98, "measured_value": value,
                        "spread": spread, "n_seeds": n, "config": "preset default", "verdict": verdict,
                        "note": note, "experiment": experiment, "column": "test_accuracy", "rule": "at_least",
                        "threshold": 0.975, "ci_low": low, "ci_high": high, "protocol": "epochs = 50",
                        "run_with": run_with})
    return pd.DataFrame(records)


def wide_figure(path: Path, width_px: int = 1300, height_px: int = 500) -> None:
    """A real matplotlib figure, wider than a thumbnail."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):  # whatever another test's figures set
        figure, axes = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
        axes.plot([6, 24, 50], [0.98, 0.97, 0.96], "o-", label="GloNet")
        axes.plot([6, 24, 50], [0.97, 0.9, 0.4], "s-", label="MLP")
        axes.legend()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, bbox_inches=None)
        plt.close(figure)


def scorecard_results(root: Path) -> dict:
    """A results tree with every verdict, a target table, costs, a figure to thumbnail and
    gaps (a figure, columns and an experiment the data file lists but the run lacks);
    returns the keyword arguments of build_summary_page."""
    results = root / "results"
    tables = results / "tables"
    tables.mkdir(parents=True)
    rows = []
    for model in ("GloNet", "MLP"):
        for depth in (6, 50):
            for seed in range(3):
                diverged = model == "MLP" and depth == 50 and seed == 1
                accuracy = float("nan") if diverged else 0.98 - (0.02 * seed if model == "MLP" else 0.001 * seed)
                rows.append({"run_id": f"model-{model}_depth-{depth}_seed-{seed}", "seed": seed, "model": model,
                             "depth": depth, "test_accuracy": accuracy, "diverged": diverged})
    pd.DataFrame(rows).to_csv(tables / "glonet.csv", index=False)
    pd.DataFrame({"protocol": ["fast", "paper_slice"], "test_accuracy": [0.5, 0.6]}).to_csv(tables / "rgm.csv",
                                                                                           index=False)
    pd.DataFrame({"setting": ["a"], "score": [1.0]}).to_csv(tables / "extra.csv", index=False)
    claims_frame().to_csv(tables / "claims.csv", index=False)
    targets = claims_frame([
        ("glonet_target_speed", "glonet", "reproduced", 12.0, 1.0, 3, 10.0, 14.0, "", ""),
        ("rgm_target_accuracy", "rgm", "not_reproduced", 0.6, None, 1, None, None, "", ""),
    ])
    targets["claim"] = ["Target text: GloNet trains fast", "Target text: RGM accuracy"]
    targets.to_csv(tables / "targets.csv", index=False)
    wide_figure(results / "figures" / "glonet" / "accuracy_vs_depth.png")
    (results / "figures" / "glonet" / "learning_curves.png").write_bytes(tiny_png(30, 20))
    (results / "figures" / "rgm").mkdir(parents=True)
    (results / "figures" / "rgm" / "generated.png").write_bytes(tiny_png(12, 12))
    repo = root / "repo"
    (repo / "report" / "glonet").mkdir(parents=True)
    (repo / "report" / "glonet" / "accuracy_vs_depth.rst").write_text(
        "Test **accuracy** against depth.\n\nSeed 002 expects GloNet near 98% at every depth.\n")
    (repo / "report" / "scorecards.yaml").write_text(SCORECARDS)
    for name, started in (("glonet_train/a", 1000.0), ("glonet_train/b", 1030.0), ("rgm_learn", 5000.0)):
        bench = results / "benchmarks" / f"{name}.tsv"
        write_bench(bench, (60.0, 100.0, 50.0))
        os.utime(bench, (started + 60.0, started + 60.0))  # written as the job ended
    write_costs(results, tables / "costs.csv", tables / "costs_by_experiment.csv", rule_stages=STAGES)
    (results / "report").mkdir()
    (results / "report" / "rulegraph.dot").write_text(WIDE_DOT)
    figures = results / "figures"
    return dict(
        results_dir=results,
        experiments={
            "glonet": {"table": tables / "glonet.csv",
                       "figures": [figures / "glonet" / "accuracy_vs_depth.png",
                                   figures / "glonet" / "learning_curves.png", figures / "glonet" / "layer_usage.png"]},
            "rgm": {"table": tables / "rgm.csv", "figures": [figures / "rgm" / "generated.png"]},
            "extra": {"table": tables / "extra.csv", "figures": []},
        },
        scorecards=repo / "report" / "scorecards.yaml",
        claims_csv=tables / "claims.csv", targets_csv=tables / "targets.csv",
        costs_csv=tables / "costs.csv", costs_summary_csv=tables / "costs_by_experiment.csv",
        rulegraph_dot=results / "report" / "rulegraph.dot", rule_stages=WIDE_STAGES,
        preset="default", repo_root=repo, use_graphviz=False,
    )


# A rule graph with a rule of every stage: its legend is the page's longest line.
WIDE_STAGES = {f"{stage}_job": stage for stage in ("data", "reference_classifier", "glonet", "potts_ebm",
                                                     "sampler_bench", "rgm", "spatial_rgm", "rgflow", "report")}
WIDE_DOT = "digraph snakemake_dag {\n" + "".join(
    f'\t{i}[label = "{rule}", color = "0.1 0.6 0.85", style="rounded"];\n' for i, rule in enumerate(WIDE_STAGES)
) + "".join(f"\t0 -> {i}\n" for i in range(1, len(WIDE_STAGES))) + "}\n"


def card_html(page: str, card_id: str) -> str:
    start = page.index(f'id="card-{card_id}"')
    return page[start:page.index("</article>", start)]


def test_the_shipped_scorecards_file_places_every_experiment_on_one_card() -> None:
    from rgbench.config import default_config

    cards = load_scorecards(ROOT / "report" / "scorecards.yaml")
    experiments = [name for name, section in default_config().items()
                   if isinstance(section, dict) and "enabled" in section and name != "report"]
    placed = [name for card in cards for name in card.experiment_names]
    assert sorted(placed) == sorted(experiments) and len(placed) == len(set(placed))
    assert [card.seed for card in cards] == ["000", "001", "002", "003", "004", None]
    assert [card.experiment_names for card in cards if card.seed == "003"] == [["potts_ebm", "generative",
                                                                                "sampler_bench"]]
    for card in cards:
        assert card.question.endswith("?") and "\n" not in card.question
        assert card.thumbnail and card.run and all(option.command.startswith("snakemake") for option in card.run)
        assert all(view.varies and view.measured for view in card.experiments)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["cards"][0].update(colour="red"), r"cards\[1\] \(id glonet\): unknown keys \['colour'\]"),
    (lambda d: d["cards"][0].pop("question"), r"missing keys \['question'\]"),
    (lambda d: d["cards"][0].update(thumbnail=["rgm/generated"]), r"thumbnail 'rgm/generated' must be"),
    (lambda d: d["cards"][0].update(seed=2), r"seed must be a quoted string"),
    (lambda d: d["cards"][1]["experiments"].update(glonet=d["cards"][0]["experiments"]["glonet"]),
     r"experiment 'glonet' is on cards"),
    (lambda d: d["cards"][0]["run"][0].pop("command"), r"run\[1\]: missing keys \['command'\]"),
    (lambda d: d["cards"][0]["experiments"]["glonet"].update(varies="model"), r"varies must be a list"),
])
def test_a_bad_scorecards_file_names_the_key(tmp_path: Path, edit, message: str) -> None:
    data = yaml.safe_load(SCORECARDS)
    edit(data)
    path = tmp_path / "scorecards.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScorecardsError, match=message):
        load_scorecards(path)


def test_claim_view_formats_each_verdict() -> None:
    views = {view.claim_id: view for view in claim_views(claims_frame())}
    reproduced = views["glonet_seed_depth6"]
    assert (reproduced.word, reproduced.symbol, reproduced.ours) == ("reproduced", "✓", "0.9812 ± 0.0021")
    assert reproduced.interval == "95% CI 0.9760 to 0.9864" and reproduced.requirement == "≥ 0.975"
    assert views["glonet_seed_mlp_depth50"].word == "not reproduced"
    assert views["glonet_seed_depth24"].ours == "0.9771 ± 0.0040"
    unjudged = views["glonet_notebook_depth30"]  # one seed measured, not enough to judge
    assert (unjudged.word, unjudged.ours, unjudged.n_seeds, unjudged.interval) == ("not run", "0.93", 1, "")
    assert views["glonet_seed_depth200"].ours == ""
    # the note does not repeat what run_with says
    assert views["rgm_paper_slice"].note.endswith("(the claim needs n_train = 10000).")
    targets = claim_views(claims_frame(), TARGET_WORDS)
    assert [t.word for t in targets[:4]] == ["met", "not met", "inconclusive", "not run"]


def test_format_pm_rounds_to_the_spread() -> None:
    assert format_pm(0.96751, 0.00389) == "0.9675 ± 0.0039"
    assert format_pm(263.24, 12.3) == "263 ± 12"
    assert format_pm(1.5, None) == "1.5"


def test_run_groups_prefer_the_claims_own_command_then_the_first_matching_option() -> None:
    card = load_scorecards_text(SCORECARDS)[0]
    views = claim_views(claims_frame())
    groups = run_groups(views[:6], card)
    assert [(g.title, g.command, g.numbers) for g in groups] == [
        ("preset paper · one GPU", "snakemake --configfile config/paper.yaml --profile profiles/slurm", [4]),
        ("preset default · 2 CPU cores", "snakemake --cores all", [5]),
        ("the default preset", "snakemake --cores all", [6]),
    ]
    assert views[3].run.preset == "paper" and views[5].run is None  # run_with: no option needed
    assert [(g.title, g.numbers) for g in run_groups(views[6:], None)] == [("no command known", [1])]
    assert split_run_with("needs CelebA on disk") == ("needs CelebA on disk", "")


def load_scorecards_text(text: str) -> list:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scorecards.yaml"
        path.write_text(text)
        return load_scorecards(path)


def test_compact_table_groups_by_what_varies_and_summarises_over_seeds() -> None:
    frame = pd.DataFrame({"model": ["A", "A", "A", "B", "B", "B"], "seed": [0, 1, 2, 0, 1, 2],
                          "accuracy": [0.90, 0.92, 0.94, 0.5, float("nan"), 0.7],
                          "diverged": [False, False, False, False, True, False],
                          "locality": [1.0, 1.0, 1.0, 0.0, 0.0, 1.0], "device": ["cpu"] * 6})
    table = compact_table(frame, varies=["model", "absent"], measured=["accuracy", "diverged", "locality", "device",
                                                                        "gone"])
    assert table.columns == ["model", "runs", "accuracy", "diverged", "locality", "device"]
    assert table.rows[0] == ["A", "3", "0.920 ± 0.020", "0 of 3", "1 ± 0", "cpu"]
    assert table.rows[1] == ["B", "3", "0.60 ± 0.14 (2 of 3)", "1 of 3", "0.33 ± 0.58", "cpu"]
    assert table.missing == ["absent", "gone"] and table.runs == 6
    whole = compact_table(frame, varies=["absent"], measured=["accuracy"])
    assert whole.rows == [["6", "0.79 ± 0.19 (5 of 6)"]]
    assert compact_table(frame, varies=["model"], measured=["gone"]).empty


def test_dag_time_is_the_union_of_job_intervals(tmp_path: Path) -> None:
    jobs = pd.DataFrame({"wall_s": [60.0, 60.0, 60.0], "cpu_s": [50.0, 50.0, 50.0],
                         "started": ["2026-01-01T10:00:00Z", "2026-01-01T10:00:30Z", "2026-01-01T11:00:00Z"],
                         "finished": ["2026-01-01T10:01:00Z", "2026-01-01T10:01:30Z", "2026-01-01T11:01:00Z"]})
    timing = dag_time(jobs)
    assert timing.busy_s == 90 + 60 and timing.span_s == 3660 and timing.cpu_s == 150 and timing.jobs == 3
    assert timing.several_sittings  # an idle hour between the jobs
    assert dag_time(jobs.iloc[:2]).several_sittings is False
    assert dag_time(jobs.drop(columns=["started"])) is None and dag_time(None) is None
    assert format_seconds(95) == "95 s" and format_seconds(750) == "12.5 min" and format_seconds(7200) == "2.0 h"


def test_benchmark_times_come_from_the_files_modification_time(fake_results: Path) -> None:
    bench = fake_results / "benchmarks" / "glonet_train" / "model-GloNet_depth-6_seed-0.tsv"
    os.utime(bench, (1_767_225_600.0, 1_767_225_600.0))  # 2026-01-01 00:00:00 UTC
    jobs, _ = collect_costs(fake_results, STAGES)
    row = jobs.set_index("job").loc["model-GloNet_depth-6_seed-0"]
    assert (row["started"], row["finished"]) == ("2025-12-31T23:59:38Z", "2026-01-01T00:00:00Z")  # 10 + 12 s


def test_reproduce_command_names_the_preset_and_any_override(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config.yaml").write_text("preset: default\nmnist_source: download\nglonet: {epochs: 3, lr: 0.001}\n")
    (tmp_path / "config" / "smoke.yaml").write_text("preset: smoke\nglonet: {epochs: 1}\n")
    run = {"preset": "smoke", "mnist_source": "download", "glonet": {"epochs": 1, "lr": 0.001}}
    assert reproduce_command(run, tmp_path, "smoke") == "snakemake --cores all --configfile config/smoke.yaml"
    run = {"preset": "smoke", "mnist_source": "/data/mnist dir", "glonet": {"epochs": 2, "lr": 0.001}}
    assert reproduce_command(run, tmp_path, "smoke") == ("snakemake --cores all --configfile config/smoke.yaml "
                                                         "--config 'mnist_source=/data/mnist dir' 'glonet={epochs: 2}'")
    run = {"preset": "default", "mnist_source": "download", "glonet": {"epochs": 3, "lr": 0.001}}
    assert reproduce_command(run, tmp_path, "default") == "snakemake --cores all"


def test_thumbnails_are_small_copies(tmp_path: Path) -> None:
    figure = tmp_path / "wide.png"
    wide_figure(figure)
    uri, width, height = thumbnail_uri(figure, 400)
    assert (width, height) == (400, 154)  # 1300 x 500 fitted into 400 x 200
    payload = base64.b64decode(uri.split(",", 1)[1])
    with Image.open(io.BytesIO(payload)) as image:
        assert image.size == (400, 154) and image.mode == "P"
    assert len(payload) < figure.stat().st_size / 3
    assert image_size(figure) == (1300, 500)


def test_scorecard_page_shows_every_verdict_beside_its_anchor(tmp_path: Path) -> None:
    arguments = scorecard_results(tmp_path)
    output = arguments["results_dir"] / "report" / "index.html"
    info = build_summary_page(output, **arguments)
    page = output.read_text()
    assert info["cards"] == ["glonet", "rgm", "potts", "other"]
    # the scorecards come first, in the data file's order, then experiments, targets, provenance
    order = [page.index(key) for key in ('id="scorecards"', 'id="card-glonet"', 'id="card-rgm"', 'id="exp-glonet"',
                                          'id="exp-rgm"', 'id="exp-extra"', 'id="targets"', 'id="how"')]
    assert order == sorted(order)
    glonet = card_html(page, "glonet")
    assert "Does GloNet keep its accuracy at every depth?" in glonet and "seed 002" in glonet
    badges = re.findall(r'<li class="claim v-(\w+)"', glonet)
    assert badges == ["reproduced", "not_reproduced", "inconclusive", "not_run", "not_run"]
    assert "ours <b>0.9812 ± 0.0021</b>" in glonet and "anchor <b>0.98</b>" in glonet and "≥ 0.975" in glonet
    assert "95% CI 0.9760 to 0.9864" in glonet
    assert glonet.count("Source:") == 0 and glonet.count('class="source"') == 2  # one per distinct citation
    assert "Source of seed" in glonet and "Source of notebook" in glonet
    assert "run model-MLP_depth-50_seed-1 diverged" in glonet  # a failure's reason is shown, open
    assert re.search(r"To run claim 4:</b> preset paper · one GPU\s*<code class=\"command\">snakemake --configfile "
                     r"config/paper.yaml --profile profiles/slurm</code>", glonet)
    assert re.search(r"To run claim 5:</b> preset default · 2 CPU cores", glonet)
    assert "✓ 1 reproduced" in glonet and "✗ 1 not reproduced" in glonet and "○ 2 not run" in glonet
    # the thumbnail: a downscaled copy of the listed figure, linking to the full one
    thumb = re.search(r'<a class="thumb" href="#fig-glonet-accuracy_vs_depth".*?<img src="data:image/png;base64,'
                      r'([^"]+)" width="(\d+)" height="(\d+)"', glonet, re.S)
    assert thumb and (int(thumb.group(2)), int(thumb.group(3))) == (560, 215)  # 1300 x 500 into 560 x 280
    assert 'id="fig-glonet-accuracy_vs_depth"' in page
    # targets: never on a card, labelled as the project's own
    assert "Target text" not in glonet and "Target text: GloNet trains fast" in page
    targets = page[page.index('id="targets"'):page.index('id="how"')]
    assert "our own goals, not published claims" in targets and "✓ met" in targets and "✗ not met" in targets
    assert "project targets: " in glonet and 'href="#targets-glonet"' in glonet
    # the claim whose experiment no card lists, and the experiment no card lists, get a card of their own
    other = card_html(page, "other")
    assert "Claim text of ghost_claim" in other and 'href="#exp-extra"' in other
    header = page[:page.index('id="scorecards"')]
    assert "7 published claims" in header and "✓ 1 reproduced" in header and "○ 4 not run" in header


def test_scorecard_page_sections_figures_first_then_compact_then_full_table(tmp_path: Path) -> None:
    arguments = scorecard_results(tmp_path)
    output = arguments["results_dir"] / "report" / "index.html"
    build_summary_page(output, **arguments)
    page = output.read_text()
    section = page[page.index('id="exp-glonet"'):page.index('id="exp-rgm"')]
    assert section.index("<figure") < section.index('id="compact-glonet"') < section.index("<details")
    # the full caption, as plain text
    assert "Test accuracy against depth. Seed 002 expects GloNet near 98% at every depth." in section
    compact = section[section.index('id="compact-glonet"'):section.index("</table>", section.index("compact-"))]
    rows = [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", compact, re.S)[1:]]
    assert rows == [["GloNet", "6", "3", "0.9790 ± 0.0010", "0 of 3"], ["GloNet", "50", "3", "0.9790 ± 0.0010", "0 of 3"],
                    ["MLP", "6", "3", "0.960 ± 0.020", "0 of 3"], ["MLP", "50", "3", "0.960 ± 0.028 (2 of 3)", "1 of 3"]]
    assert 'class="varies">model<' in compact and 'class="measured">test_accuracy<' in compact
    assert '<a href="../tables/glonet.csv">tables/glonet.csv</a>' in section
    assert "Full table: 12 rows × 6 columns" in section


def test_scorecard_page_degrades_gracefully_where_things_are_missing(tmp_path: Path) -> None:
    arguments = scorecard_results(tmp_path)
    output = arguments["results_dir"] / "report" / "index.html"
    info = build_summary_page(output, **arguments)
    page = output.read_text()
    assert info["thumbnails"] == 1 and info["missing"] == ["figures/glonet/layer_usage.png"]
    assert "Figure rgm/not_drawn_yet not produced yet." in card_html(page, "rgm")
    assert "Not produced yet: <code>figures/glonet/layer_usage.png</code>" in page
    assert "not in the table yet: width_not_yet, usage_not_yet." in page
    potts = card_html(page, "potts")  # its experiment is not run by this config
    assert "Disabled in this config: potts_ebm." in potts and "No published claim in tables/claims.csv" in potts
    assert 'id="exp-potts_ebm"' not in page
    # no data file, no claims, no targets, no costs: still a page
    bare = build_summary_page(tmp_path / "bare.html", results_dir=tmp_path / "nowhere", experiments={
        "glonet": {"table": tmp_path / "nowhere.csv", "figures": [tmp_path / "no.png"]}}, repo_root=tmp_path)
    text = (tmp_path / "bare.html").read_text()
    assert bare["cards"] == ["other"] and "No claims table was produced" in text
    assert "No table yet: <code>" in text and "No targets table was produced" in text
    assert "unknown (not a git checkout)" in text and "no benchmark files were found" in text


def test_scorecard_page_is_self_contained_and_says_how_it_was_produced(tmp_path: Path) -> None:
    arguments = scorecard_results(tmp_path)
    write_metrics(arguments["results_dir"], "glonet", "model-GloNet_depth-6_seed-0", "cuda:NVIDIA H200", "abc123")
    (tmp_path / "repo" / "config.yaml").write_text("preset: default\nglonet: {epochs: 3}\n")
    output = arguments["results_dir"] / "report" / "index.html"
    build_summary_page(output, config={"preset": "default", "glonet": {"epochs": 3}}, **arguments)
    page = output.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)  # 1 thumbnail + 3
    full = re.search(r'<figure id="fig-glonet-accuracy_vs_depth">\s*<img src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(full.group(1)) == (arguments["results_dir"] / "figures" / "glonet" /
                                               "accuracy_vs_depth.png").read_bytes()  # figures byte for byte
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
    how = page[page.index('id="how"'):]
    assert "<code class=\"command\">snakemake --cores all</code>" in how
    assert "cuda:NVIDIA H200 (1 run)" in how and "abc123" in how
    # three 60 s jobs: two overlapping by 30 s, one an hour later
    assert "<b>2.5 min</b> wall clock with at least one job running" in how
    assert "spans 67.7 min, so the results were built in several invocations" in how
    assert "<b>2.5 min</b> CPU time and 3.0 min job wall time summed over 3 jobs" in how


def test_a_claim_reproduced_on_smoke_stops_the_page(tmp_path: Path) -> None:
    arguments = scorecard_results(tmp_path)
    arguments["preset"] = "smoke"
    with pytest.raises(ValueError, match=r"\['glonet_seed_depth6'\] are marked reproduced on the smoke preset"):
        build_summary_page(tmp_path / "index.html", **arguments)
    assert not (tmp_path / "index.html").exists()


# --------------------------------------------------------------------------- Snakemake's report

def report_entries() -> list[tuple[str, dict]]:
    """(rule file, keyword arguments) of every report(...) output in workflow/rules, parsed as Python."""
    entries = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for match in re.finditer(r"^\s+(?:\w+=)?(report\()", text, re.M):  # an output entry, not prose
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = ast.parse(text[match.start(1):end + 1], mode="eval").body
            entries.append((smk.name, {k.arg: ast.literal_eval(k.value) if not isinstance(k.value, ast.Call) else None
                                       for k in call.keywords}))
    return entries


def test_every_report_entry_is_labelled() -> None:
    """Labels make Snakemake's report browsable: the first names the entry (figure or table),
    then its experiment; within a category and subcategory no two entries share them."""
    entries = report_entries()
    assert len(entries) >= 20
    seen: dict[tuple, str] = {}
    for smk, keywords in entries:
        labels = keywords.get("labels")
        assert isinstance(labels, dict), f"{smk}: a report() entry without labels ({keywords.get('caption')})"
        keys = list(labels)
        assert keys[0] in ("figure", "table") and "experiment" in keys, f"{smk}: labels {labels}"
        assert set(keys) <= {"figure", "table", "experiment", "model"}, f"{smk}: labels {labels}"
        assert all(isinstance(value, str) and value for value in labels.values())
        key = (keywords.get("category"), keywords.get("subcategory"), tuple(labels.values()))
        assert key not in seen, f"{smk} and {seen[key]}: two entries labelled {labels} in one category"
        seen[key] = smk
    labelled = {smk for smk, keywords in entries if keywords.get("labels")}
    assert labelled >= {"report.smk", "glonet.smk", "rgm.smk", "rgflow.smk", "spatial_rgm.smk",
                        "reference_classifier.smk", "potts_ebm.smk", "sampler_bench.smk"}
