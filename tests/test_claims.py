"""Claims: entry validation, provenance matching, failed runs, seed noise and the verdict
rule with its interval, on hand-made rows; the shipped claims and targets files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rgbench.evaluation.claims import (CONTRACT_COLUMNS, ClaimsError, Estimate, estimate, load_claims, parse_entry,
                                       verdict_for, welch_difference, write_claims_table)

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_EXPERIMENTS = ["reference_classifier", "glonet", "potts_ebm", "generative", "sampler_bench", "rgm", "spatial_rgm",
                        "rgflow"]


def entry(**changes):
    base = {"id": "glonet_depth6", "source": "Seed 002, README table", "claim": "GloNet reaches 98% at depth 6",
            "anchor_value": 0.98, "experiment": "glonet", "column": "test_accuracy",
            "where": {"model": "GloNet", "depth": 6}, "protocol": {"epochs": 3, "n_train": {"min": 50000}},
            "verdict": {"rule": "at_least", "tolerance": 0.005}}
    base.update(changes)
    return base


def rows(model: str, depth: int, accuracies, epochs: int = 3, n_train: int = 55000, **extra) -> list[dict]:
    return [{"run_id": f"{model}-{depth}-s{seed}", "model": model, "depth": depth, "seed": seed, "epochs": epochs,
             "n_train": n_train, "test_accuracy": accuracy, "diverged": False, **extra}
            for seed, accuracy in enumerate(accuracies)]


def run(tmp_path: Path, entries, table_rows, enabled=True) -> pd.DataFrame:
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump(entries, sort_keys=False))
    table = tmp_path / "glonet.csv"
    pd.DataFrame(table_rows).to_csv(table, index=False)
    out = tmp_path / "claims.csv"
    result = write_claims_table([claims], {"glonet": table}, {"glonet": enabled}, out, preset="test",
                                experiments=CONTRACT_EXPERIMENTS)
    assert pd.read_csv(out).columns.tolist()[:len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    return result.set_index("claim_id")


# --- the interval and the verdict rule --------------------------------------------------

def test_estimate_is_the_t_interval_of_the_seed_mean() -> None:
    est = estimate(np.array([0.97, 0.98, 0.99]))
    assert est.value == pytest.approx(0.98) and est.n == 3
    assert est.spread == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2)
    assert (est.low, est.high) == (pytest.approx(0.98 - half), pytest.approx(0.98 + half))


def test_single_run_uses_its_standard_error_or_is_a_point() -> None:
    est = estimate(np.array([0.9]), np.array([0.01]))
    assert (est.low, est.high) == (pytest.approx(0.9 - 0.0195996), pytest.approx(0.9 + 0.0195996))
    point = estimate(np.array([0.9]))
    assert point.spread is None and point.low == point.high == 0.9


@pytest.mark.parametrize("low, high, rule, anchor, tolerance, expected", [
    (0.975, 0.99, "at_least", 0.98, 0.005, "reproduced"),      # the whole interval clears 0.975
    (0.97, 0.99, "at_least", 0.98, 0.005, "inconclusive"),     # straddles it
    (0.90, 0.974, "at_least", 0.98, 0.005, "not_reproduced"),  # wholly below
    (0.08, 0.12, "at_most", 0.10, 0.05, "reproduced"),
    (0.10, 0.20, "at_most", 0.10, 0.05, "inconclusive"),
    (0.16, 0.20, "at_most", 0.10, 0.05, "not_reproduced"),
    (0.94, 0.96, "within", 0.95, 0.015, "reproduced"),
    (0.93, 0.96, "within", 0.95, 0.015, "inconclusive"),
    (0.90, 0.93, "within", 0.95, 0.015, "not_reproduced"),
])
def test_verdict_rule_on_intervals(low, high, rule, anchor, tolerance, expected) -> None:
    est = Estimate((low + high) / 2, 0.01, 3, low, high)
    assert verdict_for(est, anchor, rule, tolerance) == expected


def test_welch_difference_of_unpaired_groups() -> None:
    est = welch_difference(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0, 0.0]))
    assert est.value == pytest.approx(2.0)
    assert est.low < 2.0 < est.high and est.low > -1  # t with Welch's dof (2)


# --- judging hand-made tables -----------------------------------------------------------

def test_three_seeds_give_an_interval_verdict(tmp_path: Path) -> None:
    table = run(tmp_path, [entry(id="clear"), entry(id="straddle", anchor_value=0.99, verdict={"rule": "at_least",
                                                                                                 "tolerance": 0.0})],
                rows("GloNet", 6, [0.979, 0.981, 0.980]))
    assert table.loc["clear", "verdict"] == "reproduced"
    assert table.loc["clear", "n_seeds"] == 3
    assert table.loc["clear", "measured_value"] == pytest.approx(0.98)
    assert table.loc["clear", "spread"] == pytest.approx(0.001)
    assert table.loc["clear", "ci_low"] < 0.98 < table.loc["clear", "ci_high"]
    assert table.loc["straddle", "verdict"] == "not_reproduced"  # 0.99 is far above the interval
    assert table.loc["clear", "config"] == "preset test; epochs=3; n_train=55000"


def test_probe_runs_judge_no_claim(tmp_path: Path) -> None:
    """A run marked as a probe (a few steps at full size) is dropped from the table, and a
    probe run of the whole preset judges nothing at all."""
    probed = rows("GloNet", 6, [0.979, 0.981, 0.980], probe=True)
    assert run(tmp_path, [entry()], probed).loc["glonet_depth6", "verdict"] == "not_run"
    mixed = rows("GloNet", 6, [0.979, 0.981, 0.980], probe=False) + probed
    assert run(tmp_path, [entry()], mixed).loc["glonet_depth6", "n_seeds"] == 3

    claims = tmp_path / "claims.yaml"
    table = tmp_path / "glonet.csv"
    pd.DataFrame(rows("GloNet", 6, [0.979, 0.981, 0.980])).to_csv(table, index=False)
    judged = write_claims_table([claims], {"glonet": table}, {"glonet": True}, tmp_path / "out.csv",
                                experiments=CONTRACT_EXPERIMENTS, probe=True).set_index("claim_id")
    assert judged.loc["glonet_depth6", "verdict"] == "not_run"
    assert "probe" in judged.loc["glonet_depth6", "note"]


def test_noisy_seeds_are_inconclusive(tmp_path: Path) -> None:
    table = run(tmp_path, [entry()], rows("GloNet", 6, [0.95, 0.99, 0.995]))
    assert table.loc["glonet_depth6", "verdict"] == "inconclusive"


def test_too_few_seeds_are_not_judged(tmp_path: Path) -> None:
    table = run(tmp_path, [entry()], rows("GloNet", 6, [0.99]))
    assert table.loc["glonet_depth6", "verdict"] == "not_run"
    assert ">= 3 seeds" in table.loc["glonet_depth6", "note"]
    assert table.loc["glonet_depth6", "measured_value"] == pytest.approx(0.99)  # shown, not judged


def test_a_single_run_claim_uses_the_runs_standard_error(tmp_path: Path) -> None:
    single = rows("GloNet", 6, [0.97], test_accuracy_se=0.003)
    table = run(tmp_path, [entry(min_seeds=1, anchor_value=0.975, verdict={"rule": "at_least", "tolerance": 0.0})],
                single)
    assert table.loc["glonet_depth6", "verdict"] == "inconclusive"  # 0.97 +- 0.0059 straddles 0.975


def test_provenance_mismatch_is_not_run_naming_it(tmp_path: Path) -> None:
    small = rows("GloNet", 6, [0.9, 0.91, 0.92], n_train=1400)
    table = run(tmp_path, [entry()], small)
    assert table.loc["glonet_depth6", "verdict"] == "not_run"
    note = table.loc["glonet_depth6", "note"]
    assert "n_train = 1400" in note and "n_train >= 50000" in note


def test_runs_outside_the_protocol_are_left_out(tmp_path: Path) -> None:
    mixed = rows("GloNet", 6, [0.10, 0.11, 0.12], epochs=1) + rows("GloNet", 6, [0.979, 0.981, 0.980])
    table = run(tmp_path, [entry()], mixed)
    assert table.loc["glonet_depth6", "verdict"] == "reproduced"
    assert table.loc["glonet_depth6", "n_seeds"] == 3


def test_a_diverged_run_fails_its_claim(tmp_path: Path) -> None:
    runs = rows("GloNet", 6, [0.979, 0.981, 0.980])
    runs[1].update(diverged=True, test_accuracy=0.098)
    table = run(tmp_path, [entry()], runs)
    assert table.loc["glonet_depth6", "verdict"] == "not_reproduced"
    assert "GloNet-6-s1 diverged" in table.loc["glonet_depth6", "note"]


def test_a_missing_value_fails_its_claim(tmp_path: Path) -> None:
    runs = rows("GloNet", 6, [0.979, float("nan"), 0.980])
    table = run(tmp_path, [entry()], runs)
    assert table.loc["glonet_depth6", "verdict"] == "not_reproduced"
    assert "no finite test_accuracy" in table.loc["glonet_depth6", "note"]


def test_baseline_difference_is_paired_by_seed(tmp_path: Path) -> None:
    runs = rows("GloNet", 50, [0.97, 0.96, 0.98]) + rows("MLP", 50, [0.50, 0.49, 0.51])
    beats = entry(id="beats", anchor_value=0.0, where={"model": "GloNet", "depth": 50},
                  baseline={"where": {"model": "MLP", "depth": 50}}, baseline_failure="refutes",
                  verdict={"rule": "at_least", "tolerance": 0.0})
    table = run(tmp_path, [beats], runs)
    assert table.loc["beats", "measured_value"] == pytest.approx(0.47)
    assert table.loc["beats", "spread"] == pytest.approx(0.0)  # the paired differences are all 0.47
    assert table.loc["beats", "verdict"] == "reproduced"
    assert table.loc["beats", "note"].startswith("paired by seed (0, 1, 2)")


def test_disabled_missing_and_unmatched_give_not_run(tmp_path: Path) -> None:
    entries = [entry(id="unmatched", where={"model": "GloNet", "depth": 7}, run_with="the paper preset"),
               entry(id="no_column", column="fid")]
    table = run(tmp_path, entries, rows("GloNet", 6, [0.98] * 3))
    assert table.loc["unmatched", "verdict"] == "not_run"
    assert "To run it: the paper preset" in table.loc["unmatched", "note"]
    assert table.loc["no_column", "verdict"] == "not_run"
    disabled = run(tmp_path, [entry()], rows("GloNet", 6, [0.98] * 3), enabled=False)
    assert disabled.loc["glonet_depth6", "verdict"] == "not_run"
    assert "disabled" in disabled.loc["glonet_depth6", "note"]


# --- failures first, and what a failed baseline means --------------------------------------

def test_a_run_stopped_early_by_divergence_still_fails_its_claim(tmp_path: Path) -> None:
    """The protocol asks for 3 epochs; the run that diverged stopped after 1. Its provenance no
    longer matches, yet it was launched under the claim's protocol: not_reproduced, named."""
    runs = rows("GloNet", 6, [0.979, 0.981, 0.980])
    runs[2].update(diverged=True, epochs=1, test_accuracy=float("nan"))
    table = run(tmp_path, [entry()], runs)
    assert table.loc["glonet_depth6", "verdict"] == "not_reproduced"
    note = table.loc["glonet_depth6", "note"]
    assert "run GloNet-6-s2 diverged" in note and "stopped early: epochs = 1" in note


def test_a_short_run_that_did_not_fail_is_only_left_out(tmp_path: Path) -> None:
    runs = rows("GloNet", 6, [0.979, 0.981, 0.980]) + [
        {"run_id": "short", "model": "GloNet", "depth": 6, "seed": 3, "epochs": 1, "n_train": 55000,
         "test_accuracy": 0.5, "diverged": False}]
    table = run(tmp_path, [entry()], runs)
    assert table.loc["glonet_depth6", "verdict"] == "reproduced"
    assert table.loc["glonet_depth6", "n_seeds"] == 3
    assert "1 run(s) outside the protocol left out (epochs = 1 (the claim needs epochs = 3))" in \
        table.loc["glonet_depth6", "note"]


def test_a_failure_with_another_recipe_is_not_the_claims(tmp_path: Path) -> None:
    runs = rows("GloNet", 6, [0.979, 0.981, 0.980]) + rows("GloNet", 6, [0.1], n_train=1000)
    runs[-1].update(run_id="other-recipe", diverged=True)
    table = run(tmp_path, [entry()], runs)
    assert table.loc["glonet_depth6", "verdict"] == "reproduced"


def _faster(**changes) -> dict:
    """GloNet needs fewer steps than the MLP (paired difference at most -1 step)."""
    spec = {"id": "faster", "column": "steps", "anchor_value": -1.0, "where": {"model": "GloNet", "depth": 50},
            "baseline": {"where": {"model": "MLP", "depth": 50}}, "protocol": {"n_train": {"min": 50000}},
            "verdict": {"rule": "at_most", "tolerance": 0.0}}
    return entry(**{**spec, **changes})


def _steps(model: str, steps: list[float]) -> list[dict]:
    return [{**row, "steps": value} for row, value in zip(rows(model, 50, [0.9] * len(steps)), steps)]


def test_a_diverged_baseline_supports_a_claim_that_says_so(tmp_path: Path) -> None:
    runs = _steps("GloNet", [10, 12, 11]) + _steps("MLP", [40, 45, float("nan")])
    runs[-1]["diverged"] = True
    table = run(tmp_path, [_faster(baseline_failure="supports")], runs)
    row = table.loc["faster"]
    assert row["verdict"] == "reproduced"
    assert row["n_seeds"] == 3  # two paired seeds plus the one the diverged MLP decided
    assert row["measured_value"] == pytest.approx(-31.5)  # (10 - 40 + 12 - 45) / 2
    half = 12.706204736174707 * math.sqrt(4.5) / math.sqrt(2)  # t(0.975, 1) x sd / sqrt(2)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(-31.5 - half), pytest.approx(-31.5 + half))
    assert "paired by seed (0, 1)" in row["note"] and "run MLP-50-s2 diverged" in row["note"]


def test_a_diverged_baseline_refutes_a_claim_that_says_so(tmp_path: Path) -> None:
    runs = _steps("GloNet", [10, 12, 11]) + _steps("MLP", [40, 45, float("nan")])
    runs[-1]["diverged"] = True
    table = run(tmp_path, [_faster(baseline_failure="refutes")], runs)
    assert table.loc["faster", "verdict"] == "not_reproduced"
    assert "baseline run MLP-50-s2 diverged" in table.loc["faster", "note"]


def test_every_baseline_diverged_decides_a_supporting_claim_without_numbers(tmp_path: Path) -> None:
    runs = _steps("GloNet", [10, 12, 11]) + _steps("MLP", [float("nan")] * 3)
    for row in runs[3:]:
        row["diverged"] = True
    table = run(tmp_path, [_faster(baseline_failure="supports")], runs)
    assert table.loc["faster", "verdict"] == "reproduced"
    assert table.loc["faster", "n_seeds"] == 3 and pd.isna(table.loc["faster", "measured_value"])


def test_a_measured_failure_can_support_a_collapse_claim(tmp_path: Path) -> None:
    """"An MLP this deep collapses to chance": a diverged MLP collapsed too."""
    collapse = entry(id="collapse", anchor_value=0.1, where={"model": "MLP", "depth": 6}, failure="supports",
                     verdict={"rule": "at_most", "tolerance": 0.05})
    runs = rows("MLP", 6, [0.098, 0.101, float("nan")])
    runs[2]["diverged"] = True
    table = run(tmp_path, [collapse], runs)
    assert table.loc["collapse", "verdict"] == "reproduced"  # the two others: 0.0995 +- 0.019 <= 0.15
    assert table.loc["collapse", "n_seeds"] == 3
    assert "counted for the claim" in table.loc["collapse", "note"]


# --- single-run intervals ---------------------------------------------------------------------

def test_a_single_run_proportion_gets_a_wilson_interval_not_a_zero_wald_one(tmp_path: Path) -> None:
    """10 of 10 correct: the Wald SE is 0 ("95% CI 1 to 1"); Wilson gives 0.7225 to 1."""
    perfect = rows("GloNet", 6, [1.0], n_test=10, test_accuracy_se=0.0)
    table = run(tmp_path, [entry(min_seeds=1, trials="n_test", anchor_value=0.95,
                                 verdict={"rule": "at_least", "tolerance": 0.0})], perfect)
    row = table.loc["glonet_depth6"]
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(0.722467, abs=1e-6), pytest.approx(1.0))
    assert row["verdict"] == "inconclusive"
    assert row["note"] == "one run: Wilson 95% interval, 10 of 10"
    slice_ = rows("GloNet", 6, [0.951], n_test=1000)
    table = run(tmp_path, [entry(min_seeds=1, trials=1000, anchor_value=0.94,
                                 verdict={"rule": "at_least", "tolerance": 0.0})], slice_)
    row = table.loc["glonet_depth6"]
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(0.935809, abs=1e-6), pytest.approx(0.962739, abs=1e-6))
    assert row["verdict"] == "inconclusive"  # 0.9358 < 0.94 < 0.9627


def test_a_single_seed_standard_error_says_what_it_leaves_out(tmp_path: Path) -> None:
    table = run(tmp_path, [entry(min_seeds=1, anchor_value=0.96, verdict={"rule": "at_least", "tolerance": 0.0})],
                rows("GloNet", 6, [0.97], test_accuracy_se=0.003))
    row = table.loc["glonet_depth6"]
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(0.97 - 0.00587989, abs=1e-6),
                                               pytest.approx(0.97 + 0.00587989, abs=1e-6))
    assert "seed-to-seed spread is not in it" in row["note"]


def test_a_single_timing_is_judged_as_a_point_and_says_so(tmp_path: Path) -> None:
    timing = entry(min_seeds=1, column="train_seconds", anchor_value=5.0, verdict={"rule": "at_most", "tolerance": 0.0})
    table = run(tmp_path, [timing], rows("GloNet", 6, [0.9], train_seconds=4.2))
    row = table.loc["glonet_depth6"]
    assert row["verdict"] == "reproduced" and pd.isna(row["ci_low"])
    assert "judged as a point" in row["note"]


# --- rows: one per seed, integer seeds, what is missing -----------------------------------

def test_two_runs_of_one_seed_are_never_averaged(tmp_path: Path) -> None:
    runs = rows("GloNet", 6, [0.979, 0.981, 0.980], lr=0.01) + rows("GloNet", 6, [0.5], lr=0.1)
    runs[-1]["run_id"] = "GloNet-6-s0-lr0.1"
    table = run(tmp_path, [entry()], runs)
    assert table.loc["glonet_depth6", "verdict"] == "not_run"
    note = table.loc["glonet_depth6", "note"]
    assert "2 runs of seed 0 match (GloNet-6-s0, GloNet-6-s0-lr0.1); they differ in lr" in note


def test_seeds_pair_as_integers_whatever_their_spelling() -> None:
    from rgbench.evaluation.claims import judge

    table = pd.DataFrame(_steps("GloNet", [10, 12, 11]) + _steps("MLP", [40, 45, 50]))
    table["seed"] = ["0", "1", "2", "0.0", "1.0", "2.0"]
    claim = parse_entry(_faster(baseline_failure="refutes"), "test")
    result = judge(claim, table, True)
    assert result.note.startswith("paired by seed (0, 1, 2)")
    # paired differences -30, -33, -39
    assert result.estimate.value == pytest.approx(-34.0) and result.estimate.spread == pytest.approx(math.sqrt(21))


def test_a_null_in_the_protocol_matches_an_empty_cell(tmp_path: Path) -> None:
    runs = rows("GloNet", 6, [0.979, 0.981, 0.980], steps_per_epoch=None)
    table = run(tmp_path, [entry(protocol={"epochs": 3, "steps_per_epoch": None})], runs)
    assert table.loc["glonet_depth6", "verdict"] == "reproduced"


def test_an_awaited_column_says_what_would_record_it(tmp_path: Path) -> None:
    awaiting = entry(protocol={"epochs": 3, "grad_clip": 1.0}, awaits={"grad_clip": "the runs' params must record it"})
    table = run(tmp_path, [awaiting], rows("GloNet", 6, [0.98] * 3))
    assert table.loc["glonet_depth6", "verdict"] == "not_run"
    assert "the runs record no 'grad_clip' (needs grad_clip = 1.0): the runs' params must record it" in \
        table.loc["glonet_depth6", "note"]


def test_a_derived_column_comes_from_the_runs_metrics_json(tmp_path: Path) -> None:
    from rgbench.evaluation.claims import evaluate_claims

    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    runs = _steps("GloNet", [10, 12, 11]) + _steps("MLP", [40, 45, 50])
    curves = {"GloNet": [[0.5, 0.9], [0.6, 0.9], [0.55, 0.95]], "MLP": [[0.1, 0.3], [0.2, 0.3], [0.1, 0.2]]}
    for row in runs:
        folder = results / "runs" / "glonet" / row["run_id"]
        folder.mkdir(parents=True)
        curve = curves[row["model"]][row["seed"]]
        (folder / "metrics.json").write_text(json.dumps({"extra": {"curves": {"val_accuracy": curve}}}))
    pd.DataFrame(runs).to_csv(results / "tables" / "glonet.csv", index=False)
    claim = parse_entry(_faster(column="val_curve_mean", anchor_value=0.0, baseline_failure="supports",
                                verdict={"rule": "at_least", "tolerance": 0.0}), "test")
    row = evaluate_claims([claim], {"glonet": results / "tables" / "glonet.csv"}, {"glonet": True}).iloc[0]
    assert row["measured_value"] == pytest.approx((0.5 + 0.5 + 0.6) / 3, abs=1e-6)  # GloNet mean - MLP mean, per seed
    assert row["verdict"] == "reproduced"
    missing = evaluate_claims([claim], {"glonet": tmp_path / "nowhere" / "tables" / "glonet.csv"}, {"glonet": True})
    assert missing.iloc[0]["verdict"] == "not_run"


# --- entry validation -------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"anchor_value": "high"}, "anchor_value"),
    ({"verdict": {"rule": "about"}}, "verdict rule 'about'"),
    ({"verdict": {"rule": "at_least", "tolerance": -1}}, "tolerance"),
    ({"verdict": {"rule": "within", "tolerance": 0}}, "tolerance > 0"),
    ({"experiment": "glonett"}, "unknown experiment 'glonett'"),
    ({"aggregate": "mean"}, "unknown keys"),
    ({"where": {"depth": [6, 24]}}, "where"),
    ({"protocol": {}}, "protocol must be a non-empty mapping"),
    ({"protocol": {"n_train": {"atleast": 5}}}, "protocol"),
    ({"min_seeds": 0}, "min_seeds"),
    ({"baseline": {"model": "MLP"}}, "baseline"),
    ({"baseline": {"where": {"model": "MLP"}}}, "must say what a failed baseline run means"),
    ({"baseline_failure": "supports"}, "only such a claim"),
    ({"failure": "ignores"}, "failure must be one of"),
    ({"trials": 0}, "trials must be a column name or a positive integer"),
    ({"awaits": {"lr": ""}}, "awaits must map a column"),
])
def test_bad_entry_fails_naming_it(changes, message) -> None:
    with pytest.raises(ClaimsError, match=message):
        parse_entry(entry(**changes), "test.yaml entry 1", CONTRACT_EXPERIMENTS)


def test_missing_key_and_duplicate_ids_fail(tmp_path: Path) -> None:
    bad = entry()
    del bad["protocol"]
    with pytest.raises(ClaimsError, match=r"missing keys \['protocol'\]"):
        parse_entry(bad, "x.yaml entry 1")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump([entry()]))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump([entry()]))
    with pytest.raises(ClaimsError, match="duplicate claim id"):
        load_claims([tmp_path / "a.yaml", tmp_path / "b.yaml"])


# --- the shipped files ----------------------------------------------------------------

def _shipped(kind: str) -> list[Path]:
    return sorted((ROOT / "src" / "rgbench" / kind).glob("*.yaml"))


def test_shipped_claims_and_targets_are_valid_and_disjoint() -> None:
    claims = load_claims(_shipped("claims"), CONTRACT_EXPERIMENTS)
    targets = load_claims(_shipped("targets"), CONTRACT_EXPERIMENTS)
    assert claims and targets
    assert not {c.id for c in claims} & {t.id for t in targets}


def test_claims_cite_published_sources_not_our_issues() -> None:
    """A claim is something a paper, a seed document or an official repository said; our own
    targets (citing an issue) belong in targets/."""
    for claim in load_claims(_shipped("claims"), CONTRACT_EXPERIMENTS):
        assert "issue" not in claim.source.lower(), f"{claim.id} cites an issue: it is a target, not a claim"
        assert any(word in claim.source.lower() for word in ("seed", "arxiv", "github", "et al", "repository",
                                                             "notebook", "paper", "pull request")), claim.id


# --- timings: one run judged with the machine's run-to-run spread ------------------------

@pytest.mark.parametrize("seconds, expected", [(30.0, "reproduced"), (55.0, "inconclusive"), (110.0, "not_reproduced")])
def test_timing_cv_gives_one_timing_an_interval(tmp_path: Path, seconds: float, expected: str) -> None:
    timing = entry(id="learn_seconds", column="learn_seconds", anchor_value=60.0, min_seeds=1, timing_cv=0.23,
                   verdict={"rule": "at_most", "tolerance": 0.0})
    result = run(tmp_path, [timing], rows("GloNet", 6, [0.97], learn_seconds=seconds)).loc["learn_seconds"]
    half = 1.959964 * 0.23 * seconds
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(seconds - half, abs=1e-3),
                                                     pytest.approx(seconds + half, abs=1e-3))
    assert result["verdict"] == expected and "run-to-run variation" in result["note"]


@pytest.mark.parametrize("bad", [0, 1.0, -0.1, "0.2"])
def test_timing_cv_must_be_a_fraction(bad) -> None:
    with pytest.raises(ClaimsError, match="timing_cv"):
        parse_entry(entry(timing_cv=bad), "test.yaml")
