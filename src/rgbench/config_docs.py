"""config/README.md, generated from the config schema and config.yaml.

    python -m rgbench.config_docs > config/README.md

Every key of the configuration, with its type, allowed values, its value in config.yaml
(the one home of the defaults) and its description. A test checks the file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[2]
HEADER = """# Configuration reference

Generated from `workflow/schemas/*.schema.yaml` and `config.yaml` by
`python -m rgbench.config_docs > config/README.md`; a test fails when it is stale.

`config.yaml` sets every key below: it is the default preset and the one home of every
default. A preset in this folder holds only what differs from it, and Snakemake merges it
over `config.yaml` (`--configfile config/smoke.yaml`): mappings key by key, a list
replaced whole. `--config key=value` overrides a top-level key for one run.

| preset | file | for |
| --- | --- | --- |
| default | `config.yaml` | the whole DAG on a 2-core laptop CPU in at most 30 minutes |
| smoke | `config/smoke.yaml` | the whole DAG on the shipped MNIST subset in a few minutes; judges no claim |
| paper | `config/paper.yaml` | the published scales, one GPU per training job |

A misspelt key or an out-of-range value stops the run with a message that names it.
"""


def _resolve(node: dict[str, Any], schema_dir: Path, root: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Follow a $ref (to another file, or to #/$defs/NAME of the current file)."""
    ref = node.get("$ref")
    if ref is None:
        return node, root
    if ref.startswith("#/$defs/"):
        target = root["$defs"][ref.split("/")[-1]]
    else:
        root = yaml.safe_load((schema_dir / ref).read_text())
        target = root
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged, root


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and isinstance(node.get("items"), dict):
        item = node["items"]
        kind = f"list of {item.get('type', 'object')}"
    return kind


def _allowed(node: dict[str, Any]) -> str:
    parts = []
    target = node.get("items") if node.get("type") == "array" and isinstance(node.get("items"), dict) else node
    if "enum" in target:
        parts.append("one of " + ", ".join(f"`{v}`" for v in target["enum"]))
    if "const" in target:
        parts.append(f"`{target['const']}`")
    for key, symbol in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in target:
            parts.append(f"{symbol} {target[key]}")
    if "pattern" in target:
        parts.append(f"matches `{target['pattern']}`")
    if "multipleOf" in target:
        parts.append(f"multiple of {target['multipleOf']}")
    return ", ".join(parts)


def _value(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    if len(text) > 60:
        text = text[:57] + "..."
    return f"`{text}`".replace("|", "\\|")


def _rows(node: dict[str, Any], value: Any, path: str, schema_dir: Path, root: dict[str, Any]) -> Iterator[str]:
    node, root = _resolve(node, schema_dir, root)
    description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
    if node.get("type") == "object" and "properties" in node:
        if path:
            yield f"| `{path}` | mapping | | | {description} |"
        for key, child in node["properties"].items():
            child_value = value.get(key) if isinstance(value, dict) else None
            yield from _rows(child, child_value, f"{path}.{key}" if path else key, schema_dir, root)
        return
    allowed = _allowed(node).replace("|", "\\|")
    yield f"| `{path}` | {_type(node)} | {allowed} | {_value(value)} | {description} |"


def render(schema_path: str | Path, config_path: str | Path) -> str:
    schema_path = Path(schema_path)
    schema = yaml.safe_load(schema_path.read_text())
    config = yaml.safe_load(Path(config_path).read_text())
    table_head = ["| key | type | allowed | config.yaml | description |", "| --- | --- | --- | --- | --- |"]
    scalars, sections = [], []
    for section, child in schema["properties"].items():
        node, root = _resolve(child, schema_path.parent, schema)
        value = config.get(section)
        if node.get("type") == "object" and "properties" in node:
            description = " ".join(str(node.get("description", "")).split())
            sections += [f"\n## `{section}`\n"] + ([description + "\n"] if description else []) + table_head
            for key, grandchild in node["properties"].items():
                child_value = value.get(key) if isinstance(value, dict) else None
                sections.extend(_rows(grandchild, child_value, f"{section}.{key}", schema_path.parent, root))
        else:
            scalars.extend(_rows(node, value, section, schema_path.parent, root))
    lines = [HEADER, "\n## Top-level keys\n", *table_head, *scalars, *sections]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Render the reference of the checkout in the current directory (a worktree's own)."""
    root = Path.cwd() if (Path.cwd() / "workflow" / "schemas").is_dir() else ROOT
    sys.stdout.write(render(root / "workflow" / "schemas" / "config.schema.yaml", root / "config.yaml"))


if __name__ == "__main__":
    main()
