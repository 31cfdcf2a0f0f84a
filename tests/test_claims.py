"""Claims plumbing: validation of claims files, the join with tables, verdict rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from rgbench.evaluation.claims import (CONTRACT_COLUMNS, ClaimsError, load_claims, verdict_for,
                                       write_claims_table)

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_EXPERIMENTS = ["reference_classifier", "glonet", "potts_ebm", "sampler_bench", "rgm", "spatial_rgm", "rgflow"]


def entry(**changes):
    base = {"id": "glonet_depth6", "source": "seed 002", "claim": "GloNet reaches 98% at depth 6", "anchor_value": 0.98,
            "experiment": "glonet", "column": "test_accuracy", "where": {"model": "GloNet", "depth": 6},
            "aggregate": "mean", "verdict": {"rule": "at_least", "tolerance": 0.005}}
    base.update(changes)
    return base


def write_yaml(path: Path, entries) -> Path:
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


@pytest.fixture
def glonet_table(tmp_path: Path) -> Path:
    path = tmp_path / "glonet.csv"
    pd.DataFrame({"model": ["GloNet", "GloNet", "GloNet", "MLP"], "depth": [6, 6, 12, 6],
                  "test_accuracy": [0.978, 0.980, 0.95, 0.20], "train_seconds": [10.0, 12.0, 20.0, 5.0]}).to_csv(path, index=False)
    return path


def run(tmp_path, entries, tables, enabled, preset="default"):
    claims = write_yaml(tmp_path / "claims.yaml", entries)
    out = tmp_path / "claims.csv"
    table = write_claims_table([claims], tables, enabled, preset, out, experiments=CONTRACT_EXPERIMENTS)
    assert pd.read_csv(out).columns.tolist()[:len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    return table.set_index("claim_id")


def test_three_verdict_rules_on_a_filtered_aggregate(tmp_path, glonet_table):
    entries = [
        entry(id="least_ok"),  # mean(0.978, 0.980) = 0.979 >= 0.98 - 0.005
        entry(id="least_fail", verdict={"rule": "at_least", "tolerance": 0.0}),
        entry(id="most_ok", column="train_seconds", anchor_value=11.0, verdict={"rule": "at_most", "tolerance": 0.0}),
        entry(id="most_fail", column="train_seconds", anchor_value=10.0, aggregate="max",
              verdict={"rule": "at_most", "tolerance": 1.0}),
        entry(id="within_ok", anchor_value=0.95, where={"depth": 12}, verdict={"rule": "within", "tolerance": 0.001}),
        entry(id="within_fail", anchor_value=0.97, where={"depth": 12}, verdict={"rule": "within", "tolerance": 0.01}),
        entry(id="min_aggregate", anchor_value=0.2, where={}, aggregate="min", verdict={"rule": "within", "tolerance": 1e-9}),
    ]
    table = run(tmp_path, entries, {"glonet": glonet_table}, {"glonet": True})
    assert table.loc["least_ok", "measured_value"] == pytest.approx(0.979)
    assert table.loc["least_ok", "n_rows"] == 2
    expected = {"least_ok": "reproduced", "least_fail": "not_reproduced", "most_ok": "reproduced",
                "most_fail": "not_reproduced", "within_ok": "reproduced", "within_fail": "not_reproduced",
                "min_aggregate": "reproduced"}
    assert table["verdict"].to_dict() == expected
    assert (table["config"] == "default").all()


def test_verdict_boundaries():
    assert verdict_for(0.975, 0.98, "at_least", 0.005) == "reproduced"
    assert verdict_for(0.9749, 0.98, "at_least", 0.005) == "not_reproduced"
    assert verdict_for(181.0, 180.0, "at_most", 0.0) == "not_reproduced"
    assert verdict_for(float("nan"), 0.5, "within", 1.0) == "not_reproduced"


def test_disabled_missing_and_unmatched_give_not_run(tmp_path, glonet_table):
    empty = tmp_path / "rgm.csv"
    empty.write_text("")
    entries = [
        entry(id="disabled", experiment="potts_ebm", column="fid"),
        entry(id="no_table", experiment="rgflow", column="test_bpd", where={}),
        entry(id="empty_table", experiment="rgm", where={}),
        entry(id="no_row", where={"depth": 99}),
        entry(id="no_column", column="locality", where={}),
    ]
    tables = {"glonet": glonet_table, "rgm": empty, "rgflow": tmp_path / "absent.csv"}
    table = run(tmp_path, entries, tables, {"glonet": True, "rgm": True, "rgflow": True, "potts_ebm": False})
    assert (table["verdict"] == "not_run").all()
    assert table["measured_value"].isna().all()
    assert "disabled" in table.loc["disabled", "note"]
    assert "missing or empty" in table.loc["no_table", "note"] and "missing or empty" in table.loc["empty_table", "note"]
    assert "no row" in table.loc["no_row", "note"]
    assert "no column 'locality'" in table.loc["no_column", "note"]


def test_smoke_preset_is_never_reproduced(tmp_path, glonet_table):
    table = run(tmp_path, [entry()], {"glonet": glonet_table}, {"glonet": True}, preset="smoke")
    assert table.loc["glonet_depth6", "verdict"] == "not_run"
    assert table.loc["glonet_depth6", "measured_value"] == pytest.approx(0.979)
    assert table.loc["glonet_depth6", "config"] == "smoke"
    assert "smoke" in table.loc["glonet_depth6", "note"]


@pytest.mark.parametrize("changes, message", [
    ({"anchor_value": "high"}, "anchor_value"),
    ({"verdict": {"rule": "about", "tolerance": 0.1}}, "verdict rule 'about'"),
    ({"verdict": {"rule": "within", "tolerance": -1}}, "tolerance"),
    ({"aggregate": "sum"}, "aggregate 'sum'"),
    ({"experiment": "glonett"}, "unknown experiment 'glonett'"),
    ({"colum": "x"}, "unknown keys"),
    ({"where": {"depth": [6, 12]}}, "where"),
])
def test_bad_entry_fails_naming_it(tmp_path, changes, message):
    path = write_yaml(tmp_path / "broken.yaml", [entry(id="fine"), entry(id="the_bad_one", **changes)])
    with pytest.raises(ClaimsError, match=message) as error:
        load_claims([path], experiments=CONTRACT_EXPERIMENTS)
    assert "broken.yaml entry 2" in str(error.value) and "the_bad_one" in str(error.value)


def test_missing_key_and_duplicate_ids_fail(tmp_path):
    bad = entry(id="no_column")
    del bad["column"]
    with pytest.raises(ClaimsError, match=r"no_column.*missing keys \['column'\]"):
        load_claims([write_yaml(tmp_path / "a.yaml", [bad])])
    write_yaml(tmp_path / "a.yaml", [entry(id="twice")])
    write_yaml(tmp_path / "b.yaml", [entry(id="twice")])
    with pytest.raises(ClaimsError, match="duplicate claim id 'twice'"):
        load_claims([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    (tmp_path / "c.yaml").write_text("id: not_a_list\n")
    with pytest.raises(ClaimsError, match="c.yaml: must be a YAML list"):
        load_claims([tmp_path / "c.yaml"])


def test_shipped_claims_files_are_valid():
    claims = load_claims(sorted((ROOT / "src" / "rgbench" / "claims").glob("*.yaml")), experiments=CONTRACT_EXPERIMENTS)
    ids = {claim.id for claim in claims}
    assert {"reference_classifier_test_accuracy", "reference_classifier_train_time"} <= ids
