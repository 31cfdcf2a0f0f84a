"""The config schema rejects misspelt keys and out-of-range values, naming them;
the presets validate and the DAG resolves for each of them."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
PRESETS = {"default": ROOT / "config.yaml", "smoke": ROOT / "config" / "smoke.yaml", "paper": ROOT / "config" / "paper.yaml"}


def load(preset: str) -> dict:
    return yaml.safe_load(PRESETS[preset].read_text())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_validate(preset: str) -> None:
    config = load(preset)
    validate(config, SCHEMA)
    assert config["preset"] == preset


def test_defaults_are_filled_in() -> None:
    config = {"preset": "custom"}
    validate(config, SCHEMA)
    assert config["mnist_source"] == "download"
    assert config["data"]["exemplars_per_class"] == 13
    assert config["msds"]["n_train"] == 90000


def test_misspelt_top_level_key_is_named() -> None:
    config = load("default")
    config["mnist_sorce"] = "x"
    with pytest.raises(Exception, match="mnist_sorce"):
        validate(config, SCHEMA)


def test_misspelt_nested_key_is_named() -> None:
    config = load("default")
    config["data"]["exemplars_per_clas"] = 13
    with pytest.raises(Exception, match="exemplars_per_clas"):
        validate(config, SCHEMA)


def test_misspelt_key_in_an_experiment_section_is_named() -> None:
    config = load("default")
    config["glonet"]["enabeld"] = True
    with pytest.raises(Exception, match="enabeld"):
        validate(config, SCHEMA)


def test_out_of_range_value_is_named() -> None:
    config = load("default")
    config["data"]["rgm"]["smoothing_sigma"] = -1.0
    with pytest.raises(Exception, match=r"-1\.0 is less than the minimum"):
        validate(config, SCHEMA)
    config = load("default")
    config["mnist_checksums"] = "sha1"
    with pytest.raises(Exception, match="sha1"):
        validate(copy.deepcopy(config), SCHEMA)


def _dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("preset", ["default", "smoke", "paper"])
def test_dry_run_succeeds(preset: str, tmp_path: Path) -> None:
    args = ["--configfile", str(PRESETS[preset]), "--config", f"results_dir={tmp_path}/results"]
    result = _dry_run(*args)
    assert result.returncode == 0, result.stderr[-3000:]


def test_dry_run_names_a_misspelt_key(tmp_path: Path) -> None:
    result = _dry_run("--config", "mnist_sorce=x", f"results_dir={tmp_path}")
    assert result.returncode != 0
    assert "mnist_sorce" in result.stdout + result.stderr
