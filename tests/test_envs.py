"""Per-rule conda environments: what can be checked without running conda.

conda cannot run on the CI machines, so these tests check the env files statically:
every file parses, every package is pinned to one version, the pins fall inside
pyproject's ranges, every rule points at one of them, and each rule's script (with
the rgbench modules it imports at module level) only needs packages its env has.
`snakemake --lint` runs here too, since it is what flags a rule without `conda:`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
RULES = ROOT / "workflow" / "rules"
ENV_NAMES = ("data", "torch", "report")

# Driver-side packages: they run Snakemake itself and never inside a rule's env.
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
# Import name -> distribution name, where the two differ.
IMPORT_TO_DIST = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "skimage": "scikit-image"}
# Conda pins: `name=1.2.3` or `name==1.2.3`; pip pins: `name==1.2.3`.
CONDA_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*==?\s*(?P<version>[0-9][A-Za-z0-9_.+\-]*)$")
PIP_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*(?P<version>[0-9][A-Za-z0-9_.+\-]*)$")


def load_env(name: str) -> dict:
    return yaml.safe_load((ENVS / f"{name}.yaml").read_text())


def env_pins(env: dict) -> dict[str, tuple[str, str]]:
    """{canonical name: (version, the line it came from)} for conda and pip entries."""
    pins: dict[str, tuple[str, str]] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for line in entry.get("pip", []):
                match = PIP_PIN.match(line.strip())
                assert match, f"pip entry {line!r} is not pinned as name==version"
                pins[canonicalize_name(match["name"])] = (match["version"], line)
        else:
            match = CONDA_PIN.match(str(entry).strip())
            assert match, f"conda entry {entry!r} is not pinned as name=version"
            pins[canonicalize_name(match["name"])] = (match["version"], str(entry))
    return pins


def pyproject_ranges() -> tuple[SpecifierSet, dict[str, SpecifierSet]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        ranges[canonicalize_name(requirement.name)] = requirement.specifier
    return SpecifierSet(project["requires-python"]), ranges


def parse_rules() -> list[dict]:
    """Every rule in workflow/rules/*.smk with its conda env and script (paths resolved)."""
    header = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:", re.M)
    directive = r"^\s+{}:\s*\n?\s*[rf]?\"([^\"]+)\""
    rules = []
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        starts = list(header.finditer(text))
        for i, match in enumerate(starts):
            body = text[match.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
            # The block ends at the next top-level (unindented) statement.
            block = re.split(r"\n(?=\S)", body, maxsplit=1)[0]
            conda = re.search(directive.format("conda"), block, re.M)
            script = re.search(directive.format("script"), block, re.M)
            acts = bool(script) or re.search(r"^\s+(shell|run|wrapper|notebook):", block, re.M) is not None
            rules.append({
                "name": match[1],
                "file": smk.name,
                "acts": acts,
                "conda": (smk.parent / conda[1]).resolve() if conda else None,
                "script": (smk.parent / script[1]).resolve() if script else None,
            })
    return rules


def module_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is loaded (imports inside functions are lazy)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                # `from rgbench.data import mnist` loads the submodule too.
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
    visit(tree.body)
    return names


def rgbench_file(module: str) -> Path | None:
    base = ROOT / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def third_party_imports(script: Path) -> dict[str, str]:
    """{top-level third-party module: the file importing it}, following rgbench modules."""
    found: dict[str, str] = {}
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in module_level_imports(path):
            top = module.split(".")[0]
            if top == "rgbench":
                parts = module.split(".")
                # Importing a.b.c runs the __init__ of a and a.b first.
                for depth in range(1, len(parts) + 1):
                    file = rgbench_file(".".join(parts[:depth]))
                    if file is not None:
                        todo.append(file)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_file_parses_with_channels_and_dependencies(name):
    env = load_env(name)
    assert isinstance(env, dict)
    assert env.get("channels"), f"envs/{name}.yaml names no channels"
    assert "defaults" not in env["channels"], "the defaults channel has licence terms; use conda-forge"
    assert isinstance(env.get("dependencies"), list) and env["dependencies"]


def test_no_unexpected_env_files():
    # One small env per rule family; a stray file would be silently unused.
    assert sorted(p.stem for p in ENVS.glob("*.yaml")) == sorted(ENV_NAMES)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_every_package_is_pinned_to_one_version(name):
    pins = env_pins(load_env(name))
    assert "python" in pins, f"envs/{name}.yaml does not pin python"
    for package, (version, line) in pins.items():
        try:
            Version(version)
        except InvalidVersion:
            pytest.fail(f"envs/{name}.yaml: {line!r} is not an exact version")


@pytest.mark.parametrize("name", ENV_NAMES)
def test_pins_satisfy_pyproject_ranges(name):
    python_range, ranges = pyproject_ranges()
    pins = env_pins(load_env(name))
    assert Version(pins["python"][0]) in python_range, (
        f"envs/{name}.yaml pins python {pins['python'][0]}, pyproject requires {python_range}")
    for package, (version, line) in pins.items():
        if package in ranges:
            assert Version(version) in ranges[package], (
                f"envs/{name}.yaml pins {line!r}, outside pyproject's {package}{ranges[package]}")


def test_every_runtime_dependency_is_pinned_in_some_env():
    _, ranges = pyproject_ranges()
    pinned = set().union(*(env_pins(load_env(name)) for name in ENV_NAMES))
    missing = sorted(set(ranges) - DRIVER_ONLY - pinned)
    assert not missing, f"pyproject dependencies no env file pins: {missing}"


def test_shared_packages_have_one_version_across_envs():
    # A package pinned differently in two envs would make results depend on which
    # family's env ran a step.
    versions: dict[str, dict[str, str]] = {}
    for name in ENV_NAMES:
        for package, (version, _) in env_pins(load_env(name)).items():
            versions.setdefault(package, {})[name] = version
    clashes = {p: v for p, v in versions.items() if len(set(v.values())) > 1}
    assert not clashes, f"packages pinned to different versions: {clashes}"


def test_every_rule_with_an_action_uses_an_env_from_envs():
    rules = parse_rules()
    assert any(rule["name"] == "mnist_cache" for rule in rules), "rule parser found no data rules"
    env_files = {(ENVS / f"{name}.yaml").resolve() for name in ENV_NAMES}
    problems = []
    for rule in rules:
        if not rule["acts"]:
            continue
        if rule["conda"] is None:
            problems.append(f"{rule['file']}: rule {rule['name']} has no conda:")
        elif rule["conda"] not in env_files:
            problems.append(f"{rule['file']}: rule {rule['name']} uses {rule['conda']}, not one of envs/*.yaml")
    assert not problems, "\n".join(problems)


def test_each_rule_script_only_imports_what_its_env_provides():
    rules = [r for r in parse_rules() if r["script"] is not None and r["conda"] is not None]
    assert rules
    provided = {(ENVS / f"{name}.yaml").resolve(): set(env_pins(load_env(name))) for name in ENV_NAMES}
    problems = []
    for rule in rules:
        if rule["conda"] not in provided or not rule["script"].exists():
            continue  # reported by the test above / by snakemake itself
        for module, where in sorted(third_party_imports(rule["script"]).items()):
            dist = canonicalize_name(IMPORT_TO_DIST.get(module, module))
            if dist not in provided[rule["conda"]]:
                problems.append(f"rule {rule['name']} ({rule['conda'].name}): {where} imports "
                                f"{module}, which that env does not pin")
    assert not problems, "\n".join(problems)


def test_import_scan_sees_through_rgbench_modules(tmp_path):
    # The scan follows rgbench imports and ignores lazy (function-level) imports.
    script = tmp_path / "s.py"
    script.write_text("import json\nfrom rgbench.training import fit\n"
                      "def f():\n    import seaborn\n")
    found = third_party_imports(script)
    assert {"numpy", "torch"} <= set(found)
    assert "seaborn" not in found and "json" not in found


def test_snakemake_lint_is_clean(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--config", f"results_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
