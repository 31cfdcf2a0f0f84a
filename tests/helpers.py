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


def level_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny 4-level cache (120 training images of which 20 validate, 40 test; each digit a
    bright bar on its own row over noise), a tiny untrained reference classifier and its
    feature statistics, laid out as the pipeline's files."""
    import numpy as np
    import torch

    from rgbench.evaluation.reference import ReferenceCNN, ReferenceConfig, save_reference_classifier
    from rgbench.io import save_npz_atomic

    rng = np.random.default_rng(0)

    def levels(labels: np.ndarray) -> np.ndarray:
        images = rng.integers(0, 2, (len(labels), 28, 28)).astype(np.uint8)
        images[np.arange(len(labels)), 2 + 2 * labels, 4:24] = 3
        return images

    train_labels, test_labels = np.arange(120) % 10, np.arange(40) % 10
    save_npz_atomic(tmp_path / "mnist4.npz", train_levels=levels(train_labels), train_labels=train_labels,
                    val_index=np.arange(100, 120), test_levels=levels(test_labels), test_labels=test_labels)
    torch.manual_seed(0)
    save_reference_classifier(ReferenceCNN(ReferenceConfig(channels1=4, channels2=8, hidden=16, dropout=0.0)).eval(),
                              tmp_path / "reference.pt")
    np.savez(tmp_path / "stats.npz", mu=np.zeros(16), sigma=np.eye(16))
    return tmp_path / "mnist4.npz", tmp_path / "reference.pt", tmp_path / "stats.npz"


def dbn_config(**overrides):
    """A DBNConfig of config.yaml's ``potts_ebm.dbn`` block (and its smoothing) with ``overrides``;
    the equilibrium prior's AIS cut to a tiny model's size unless overridden."""
    from rgbench.models.dbn import DBNConfig

    section = default_config()["potts_ebm"]
    return DBNConfig(**{**section["dbn"], "smoothing": section["smoothing"], "prior_chains": 4, "prior_steps": 10,
                        **overrides})
