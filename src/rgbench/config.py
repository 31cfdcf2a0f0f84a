"""Typed settings from a rule's config hand-off, built the same way by every experiment.

A rule hands its job exactly the config keys that decide its outputs (``params:
config=...``, see workflow/rules/common.smk). The job turns that mapping into its
dataclass with :func:`build`: an unknown key, a missing key or a value of the wrong type
stops the job with a message naming the dataclass and the key. Config dataclasses carry
no defaults for config keys, so config.yaml stays the one home of every default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import dacite

T = TypeVar("T")


class ConfigError(ValueError):
    """A config mapping does not fit the dataclass it is built into."""


# YAML writes 1 for 1.0; a float field takes either.
_CONFIG = dacite.Config(strict=True, type_hooks={float: float}, cast=[tuple])


def build(cls: type[T], mapping: Mapping[str, Any]) -> T:
    """``cls`` (a dataclass, possibly nested) from ``mapping``, strictly checked."""
    try:
        return dacite.from_dict(cls, dict(mapping), config=_CONFIG)
    except dacite.DaciteError as error:
        raise ConfigError(f"{cls.__name__}: {error}") from error


def select(mapping: Mapping[str, Any], *keys: str, **extra: Any) -> dict[str, Any]:
    """The given keys of ``mapping`` (all must exist) plus ``extra``."""
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ConfigError(f"missing keys {missing}; present: {sorted(mapping)}")
    return {**{key: mapping[key] for key in keys}, **extra}


def default_config() -> dict[str, Any]:
    """The checkout's config.yaml (every key's default), for benchmarks and tests that
    build a job's settings outside the workflow."""
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[2] / "config.yaml").read_text())
