"""Helpers shared by several test modules (not fixtures: plain functions)."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a run of the workflow needs, copied so a test's run never touches the checkout.
WORKFLOW_ENTRIES = ("Snakefile", "config.yaml", "config", "workflow", "scripts", "src", "envs", "report",
                    "tests/data/mnist-subset")


def tiny_png(width: int, height: int, value: int = 128) -> bytes:
    """A valid greyscale PNG of the given size, written by hand (no matplotlib needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes([value]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def copy_workflow(tmp_path: Path) -> Path:
    """A snapshot of the workflow with its own .snakemake/ (locks, metadata, logs); a copy,
    not symlinks, so the files cannot change under the test while it runs."""
    work = tmp_path / "workflow-copy"
    for name in WORKFLOW_ENTRIES:
        source, target = ROOT / name, work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    return work


def default_config() -> dict:
    """config.yaml: the one home of every default (tests build their settings from it)."""
    from rgbench.config import default_config as load

    return load()


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in the way Snakemake merges a --configfile:
    mappings key by key, everything else (lists included) replaced whole."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out
