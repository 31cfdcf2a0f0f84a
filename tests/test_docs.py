"""The docs point at files that exist: README's experiment table names real files, every
experiment module has its row, the decision records config.yaml cites exist, and the
docs' relative links resolve inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLE_HEADER = "| experiment | what it reproduces |"
# Columns whose backticked paths are results (made by a run), not repository files.
RESULT_COLUMNS = {"table"}
BACKTICKED = re.compile(r"`([^`]+)`")


def experiment_table(readme: str) -> list[dict[str, str]]:
    """README's experiment table: one {column header: cell text} per row."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == len(header), f"row has {len(cells)} cells, the header {len(header)}: {line[:80]}"
        rows.append(dict(zip(header, cells)))
    return rows


@pytest.fixture(scope="module")
def table() -> list[dict[str, str]]:
    return experiment_table((ROOT / "README.md").read_text())


def test_table_parser_reads_cells_and_backticked_paths() -> None:
    text = ("intro\n\n| experiment | what it reproduces | models | table |\n| --- | --- | --- | --- |\n"
            "| `a` | it | `src/x.py`, `src/y.py` | `tables/a.csv` |\n\nafter | not a row\n")
    rows = experiment_table(text)
    assert rows == [{"experiment": "`a`", "what it reproduces": "it", "models": "`src/x.py`, `src/y.py`",
                     "table": "`tables/a.csv`"}]
    assert BACKTICKED.findall(rows[0]["models"]) == ["src/x.py", "src/y.py"]


def test_every_path_the_table_names_exists(table: list[dict[str, str]]) -> None:
    missing, checked = [], 0
    for row in table:
        for column, cell in row.items():
            if column in RESULT_COLUMNS:
                continue
            for token in BACKTICKED.findall(cell):
                if "/" in token:
                    checked += 1
                    if not (ROOT / token).exists():
                        missing.append(f"{row['experiment']} / {column}: {token}")
    assert checked >= 3 * len(table)  # models, module and rules of every row at least
    assert missing == []


def test_config_sections_the_table_names_are_config_yaml_sections(table: list[dict[str, str]]) -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    named = [token.rstrip(":") for row in table for token in BACKTICKED.findall(row["config"])]
    assert named and all(name in config for name in named), named


def test_every_experiment_has_a_row_and_every_module_is_named(table: list[dict[str, str]]) -> None:
    names = {row["experiment"].strip("`") for row in table}
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    experiments = {name for name, block in config.items()
                   if isinstance(block, dict) and "enabled" in block and name != "report"}
    assert names == experiments
    named = {token for row in table for token in BACKTICKED.findall(row["experiment module"])}
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "src/rgbench/experiments").glob("*.py")
               if path.name != "__init__.py"}
    assert modules - named == set(), "experiment modules missing from README's table"


def test_decision_records_cited_by_config_yaml_exist() -> None:
    cited = set(re.findall(r"docs/decisions/[\w.-]+\.md", (ROOT / "config.yaml").read_text()))
    assert cited, "config.yaml cites no decision record"
    assert sorted(path for path in cited if not (ROOT / path).exists()) == []


def _relative_links(path: Path) -> list[str]:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    return [link for link in links if "://" not in link and not link.startswith("mailto:")]


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                      for p in (ROOT / "docs").rglob("*.md"))])
def test_relative_links_resolve_inside_the_repository(doc: str) -> None:
    path = ROOT / doc
    for link in _relative_links(path):
        target = (path.parent / link).resolve()
        assert target.is_relative_to(ROOT), f"{doc} links outside the repository: {link}"
        assert target.exists(), f"{doc}: broken link {link}"
