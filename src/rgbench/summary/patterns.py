"""Snakemake file patterns (``runs/{exp}/{run_id,[a-z-]+}/metrics.json``) outside Snakemake."""

from __future__ import annotations

import re
from typing import Mapping

WILDCARD = re.compile(r"\{\s*(\w+)\s*(?:,\s*((?:[^{}]|\{[^{}]*\})*))?\}")


def wildcard_regex(pattern: str) -> re.Pattern:
    """The pattern as an anchored regex with one named group per wildcard."""
    out, position, seen = [], 0, set()
    for match in WILDCARD.finditer(pattern):
        out.append(re.escape(pattern[position:match.start()]))
        name, constraint = match.group(1), match.group(2)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{constraint or '.+'})")
        seen.add(name)
        position = match.end()
    out.append(re.escape(pattern[position:]))
    return re.compile("".join(out) + r"\Z")


def fill(pattern: str, wildcards: Mapping[str, str]) -> str:
    """The pattern with its wildcards replaced; KeyError names a wildcard not given."""
    return WILDCARD.sub(lambda match: str(wildcards[match.group(1)]), pattern)
