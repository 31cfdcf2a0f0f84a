"""config.yaml is the one home of every default; presets are overlays holding only what
differs; Snakemake merges them as the design assumes; the schema rejects misspelt keys and
out-of-range values, naming them; config/README.md documents every key and is current."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from helpers import default_config, merged

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
OVERLAYS = {"smoke": ROOT / "config" / "smoke.yaml", "paper": ROOT / "config" / "paper.yaml",
            "dbn": ROOT / "config" / "dbn.yaml", "dtm": ROOT / "config" / "dtm.yaml"}


def preset(name: str) -> dict:
    """The config a preset gives: config.yaml with the overlay merged over it."""
    base = default_config()
    return base if name == "default" else merged(base, yaml.safe_load(OVERLAYS[name].read_text()))


@pytest.mark.parametrize("name", ["default", "smoke", "paper", "dbn", "dtm"])
def test_presets_validate(name: str) -> None:
    config = preset(name)
    validate(config, SCHEMA, set_default=False)
    assert config["preset"] == name


def test_config_yaml_alone_is_complete() -> None:
    # every object in the schema lists all its keys as required, so config.yaml validating
    # means it sets every key: there is no default anywhere else
    validate(default_config(), SCHEMA, set_default=False)
    incomplete = default_config()
    del incomplete["glonet"]["grids"]["seed"]["lr"]
    with pytest.raises(Exception, match="'lr' is a required property"):
        validate(incomplete, SCHEMA, set_default=False)


def _schema_defaults(node, path="") -> list[str]:
    found = []
    if isinstance(node, dict):
        if "default" in node:
            found.append(path)
        for key, value in node.items():
            found += _schema_defaults(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _schema_defaults(value, f"{path}/{index}")
    return found


def test_schemas_hold_no_defaults() -> None:
    for path in sorted((ROOT / "workflow" / "schemas").glob("*.yaml")):
        assert _schema_defaults(yaml.safe_load(path.read_text())) == [], f"{path.name} carries defaults"


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    else:
        yield path, node


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_overlays_hold_only_what_differs(name: str) -> None:
    base = default_config()
    overlay = yaml.safe_load(OVERLAYS[name].read_text())
    same = []
    for path, value in _leaves(overlay):
        node = base
        for key in path:
            node = node[key]  # a key config.yaml lacks would fail here: overlays add no keys
        if node == value:
            same.append(".".join(path))
    assert same == [], f"{name} repeats config.yaml at {same}"


def test_snakemake_merges_a_configfile_over_the_snakefile_configfile(tmp_path: Path) -> None:
    """The overlay design rests on this: mappings merge key by key, lists are replaced whole."""
    (tmp_path / "base.yaml").write_text("alpha: {x: 1, y: [1, 2, 3]}\nbeta: 5\n")
    (tmp_path / "overlay.yaml").write_text("alpha: {y: [9]}\n")
    (tmp_path / "Snakefile").write_text(
        'configfile: "base.yaml"\n\n\nrule dump:\n    output:\n        "config.json",\n'
        '    run:\n        import json\n\n        json.dump(config, open(output[0], "w"))\n'
    )
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "overlay.yaml",
                          "--config", "beta=6"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "config.json").read_text()) == {"alpha": {"x": 1, "y": [9]}, "beta": 6}


def test_misspelt_top_level_key_is_named() -> None:
    config = default_config()
    config["mnist_sorce"] = "x"
    with pytest.raises(Exception, match="mnist_sorce"):
        validate(config, SCHEMA, set_default=False)


def test_misspelt_nested_key_is_named() -> None:
    config = default_config()
    config["data"]["exemplars_per_clas"] = 13
    with pytest.raises(Exception, match="exemplars_per_clas"):
        validate(config, SCHEMA, set_default=False)


def test_misspelt_key_in_an_experiment_section_is_named() -> None:
    config = default_config()
    config["glonet"]["enabeld"] = True
    with pytest.raises(Exception, match="enabeld"):
        validate(config, SCHEMA, set_default=False)


def test_out_of_range_value_is_named() -> None:
    config = default_config()
    config["data"]["rgm"]["smoothing_sigma"] = -1.0
    with pytest.raises(Exception, match=r"-1\.0 is less than the minimum"):
        validate(config, SCHEMA, set_default=False)
    config = default_config()
    config["mnist_checksums"] = "sha1"
    with pytest.raises(Exception, match="sha1"):
        validate(copy.deepcopy(config), SCHEMA, set_default=False)


def test_only_gpu_capable_families_may_ask_for_a_gpu() -> None:
    config = default_config()
    config["resources"]["cpu"]["gpu"] = 1
    with pytest.raises(Exception, match="gpu"):
        validate(config, SCHEMA, set_default=False)


# Config dataclasses hold no defaults for config keys (config.yaml is their one home):
# every field is either without a default, or not a config key at all.
def _config_dataclasses():
    from rgbench.evaluation.reference import ReferenceConfig
    from rgbench.experiments.glonet import GloNetRunConfig
    from rgbench.experiments.potts_ebm import AnalysisConfig, PottsRunConfig
    from rgbench.experiments.potts_ebm_dbn import DBNSamplingConfig
    from rgbench.experiments.potts_ebm_dtm import DTMSamplingConfig
    from rgbench.models.dbn import DBNConfig
    from rgbench.models.dtm import DTMConfig
    from rgbench.experiments.reference_classifier import ReferenceTrainConfig
    from rgbench.experiments.sampler_bench import SamplerBenchConfig
    from rgbench.experiments.spatial_rgm import SpatialEvalConfig, SpatialRunConfig
    from rgbench.models.pcd import LatticeTrainConfig, RBMTrainConfig
    from rgbench.models.spatial_rgm import GumbelConfig, SpatialLossConfig, SpatialRGMConfig

    config = default_config()
    spatial = config["spatial_rgm"]
    return [
        (GloNetRunConfig, {**config["glonet"], **config["glonet"]["grids"]["seed"]}),
        (ReferenceTrainConfig, config["reference_classifier"]),
        (ReferenceConfig, config["reference_classifier"]),
        (PottsRunConfig, config["potts_ebm"]),
        (AnalysisConfig, config["potts_ebm"]["analysis"]),
        (LatticeTrainConfig, config["potts_ebm"]["pcd"]),
        (RBMTrainConfig, config["potts_ebm"]["rbm"]),
        (DBNConfig, config["potts_ebm"]["dbn"]),
        (DBNSamplingConfig, config["potts_ebm"]["analysis"]),
        (DTMConfig, config["potts_ebm"]["dtm"]),
        (DTMSamplingConfig, config["potts_ebm"]["analysis"]),
        (SamplerBenchConfig, config["sampler_bench"]),
        (SpatialRGMConfig, spatial["model"]),
        (SpatialEvalConfig, spatial["evaluation"]),
        *[item for grid in spatial["grids"].values() for item in (
            (SpatialRunConfig, grid), (SpatialLossConfig, grid["loss"]), (GumbelConfig, grid["gumbel"]))],
    ]


def test_config_dataclasses_carry_no_defaults_for_config_keys() -> None:
    offenders = []
    for cls, section in _config_dataclasses():
        for field in dataclasses.fields(cls):
            has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            if has_default and field.name in section and field.default != section[field.name]:
                offenders.append(f"{cls.__name__}.{field.name}")
    assert offenders == []


def test_config_reference_is_current() -> None:
    from rgbench.config_docs import render

    expected = render(ROOT / "workflow" / "schemas" / "config.schema.yaml", ROOT / "config.yaml")
    current = (ROOT / "config" / "README.md").read_text()
    assert current == expected, "config/README.md is stale: run `python -m rgbench.config_docs > config/README.md`"


def _dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("name", ["default", "smoke", "paper", "dbn", "dtm"])
def test_dry_run_succeeds(name: str, tmp_path: Path) -> None:
    args = ["--configfile", str(OVERLAYS[name])] if name in OVERLAYS else []
    result = _dry_run(*args, "--config", f"results_dir={tmp_path}/results")
    assert result.returncode == 0, result.stderr[-3000:]


def test_dry_run_names_a_misspelt_key(tmp_path: Path) -> None:
    result = _dry_run("--config", "mnist_sorce=x", f"results_dir={tmp_path}")
    assert result.returncode != 0
    assert "mnist_sorce" in result.stdout + result.stderr
