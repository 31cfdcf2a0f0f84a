"""Questions asked of a finished smoke run: what a config change would rerun (one hand-off
per rule), and whether the shipped claims fit the tables the pipeline writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rgbench.evaluation.claims import DERIVED_COLUMNS, evaluate_claims, load_claims

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["reference_classifier", "glonet", "potts_ebm", "generative", "sampler_bench", "rgm", "spatial_rgm", "rgflow"]
# Rules downstream of every figure: they embed or list figures, so they rerun with them.
REPORT_RULES = {"report_page", "report_costs", "report_costs_table", "all"}

pytestmark = pytest.mark.slow


def dry_run(work: Path, overlay: dict, tmp_path: Path) -> set[str]:
    """The rules of the jobs Snakemake would run after merging ``overlay`` into the smoke preset."""
    extra = tmp_path / "overlay.yaml"
    extra.write_text(yaml.safe_dump(overlay))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--nolock", "--configfile", "config/smoke.yaml",
                             str(extra)], cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return job_stats(result.stdout)


def job_stats(text: str) -> set[str]:
    """The rules in the "Job stats" table Snakemake prints (nothing when there is nothing to do)."""
    rules, inside = set(), False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            inside = True
            continue
        parts = line.split()
        if inside and not parts and rules:
            break
        if inside and len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            rules.add(parts[0])
    return rules


def figure_rules(work: Path) -> set[str]:
    """Every rule that writes a figure under results/figures/."""
    listing = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=work, capture_output=True,
                             text=True, timeout=120).stdout.split()
    return {name for name in listing if "figure" in name}


def test_the_smoke_run_is_complete(smoke_workdir: Path, tmp_path: Path) -> None:
    assert dry_run(smoke_workdir, {}, tmp_path) == set()


def test_a_figure_only_key_reruns_figures_and_nothing_upstream(smoke_workdir: Path, tmp_path: Path) -> None:
    rerun = dry_run(smoke_workdir, {"figures": {"dpi": 77}}, tmp_path)
    figures = figure_rules(smoke_workdir)
    assert rerun - figures - REPORT_RULES == set(), f"upstream of figures: {sorted(rerun - figures - REPORT_RULES)}"
    # every experiment's figures are redrawn
    for experiment in EXPERIMENTS:
        assert any(rule.startswith(experiment) for rule in rerun), experiment


@pytest.mark.parametrize("overlay, expected", [
    ({"rgm": {"figures": {"elbo_bins": 4}}}, {"rgm_figure_accuracy_elbo"}),
    ({"rgm": {"samples": {"n_generate": 3}}}, {"rgm_samples", "rgm_figure_generated", "rgm_figure_reconstructions"}),
    # the EBMs' samples feed the generative comparison too
    ({"potts_ebm": {"analysis": {"samples": 50}}}, {"potts_ebm_evaluate", "potts_ebm_figures", "experiment_table",
                                                    "generative_table", "generative_figures", "claims",
                                                    "report_experiment_table", "report_claims_table"}),
    ({"rgflow": {"eval": {"samples": 4}}}, {"rgflow_evaluate", "rgflow_figures", "experiment_table", "claims",
                                            "report_experiment_table", "report_claims_table"}),
])
def test_a_key_reruns_only_the_rules_it_decides(smoke_workdir: Path, tmp_path: Path, overlay, expected) -> None:
    assert dry_run(smoke_workdir, overlay, tmp_path) - REPORT_RULES == expected


def _claims(kind: str):
    return load_claims(sorted((ROOT / "src" / "rgbench" / kind).glob("*.yaml")), EXPERIMENTS)


@pytest.mark.parametrize("kind", ["claims", "targets"])
def test_every_entry_names_columns_the_smoke_tables_have(smoke_workdir: Path, kind: str) -> None:
    """A typo in a where key, a column or a protocol key fails here instead of turning into not_run."""
    tables = smoke_workdir / "results" / "tables"
    problems = []
    for claim in _claims(kind):
        columns = set(pd.read_csv(tables / f"{claim.experiment}.csv").columns)
        names = {claim.column, *claim.where, *(c.column for c in claim.protocol)}
        if claim.baseline:
            names |= set(claim.baseline["where"])
        # columns an experiment does not record yet (the claim says what would) or that the
        # verdict derives from the runs' metrics.json are not table columns
        names -= set(claim.awaits) | set(DERIVED_COLUMNS)
        problems += [f"{claim.id}: {name}" for name in sorted(names - columns)]
    assert problems == []


def test_the_shipped_subset_judges_no_claim_whatever_the_preset_is_called(smoke_workdir: Path) -> None:
    """The smoke guard is provenance, not a name: the subset's runs match no claim's protocol."""
    tables = {name: smoke_workdir / "results" / "tables" / f"{name}.csv" for name in EXPERIMENTS}
    judged = evaluate_claims(_claims("claims"), tables, {name: True for name in EXPERIMENTS}, preset="custom")
    assert set(judged["verdict"]) == {"not_run"}, judged.loc[judged["verdict"] != "not_run", ["claim_id", "note"]]
