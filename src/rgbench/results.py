"""The contract's results layout: metrics.json per job, one CSV table per experiment."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import pandas as pd

from rgbench.io import atomic_path, read_json, write_json_atomic
from rgbench.runtime import versions

REQUIRED_FIELDS = ("experiment", "run_id", "params", "seed", "metrics", "wall_seconds", "device", "versions",
                   "provenance")
# What a run actually used; claims are judged only on runs whose provenance matches.
PROVENANCE_FIELDS = ("n_train", "n_val", "n_test", "data_sha256", "n_params")
PROVENANCE_LENGTH_FIELDS = ("epochs_run", "steps_run")


def provenance(*, n_train: int, n_val: int, n_test: int, data_sha256: str | Mapping[str, str],
               n_params: int | None, epochs_run: int | None = None, steps_run: int | None = None,
               probe: bool = False, **extra: Any) -> dict[str, Any]:
    """The contract's ``provenance`` block: data sizes, the SHA-256 of the data cache the
    run read (or one per file), how long it trained, its parameter count, and anything else
    a claim's protocol may need (``extra``). At least one of epochs_run / steps_run is set
    for a trained model; both are None for models fitted in one pass. ``probe``: the run was
    the paper preset's probe (a few steps), marked so that no claim is judged on it."""
    block: dict[str, Any] = {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test),
                             "data_sha256": data_sha256 if isinstance(data_sha256, str) else dict(data_sha256),
                             "n_params": None if n_params is None else int(n_params),
                             "epochs_run": None if epochs_run is None else int(epochs_run),
                             "steps_run": None if steps_run is None else int(steps_run)}
    clash = sorted(set(extra) & set(block))
    if clash:
        raise ValueError(f"provenance keys given twice: {clash}")
    block.update(extra)
    if probe:
        block["probe"] = True
    return block


def metrics_path(results_dir: str | os.PathLike, experiment: str, run_id: str) -> Path:
    return Path(results_dir) / "runs" / experiment / run_id / "metrics.json"


def write_metrics(
    path: str | os.PathLike,
    *,
    experiment: str,
    run_id: str,
    params: Mapping[str, Any],
    seed: int | None,
    metrics: Mapping[str, Any],
    wall_seconds: float,
    device: str,
    provenance: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one job's ``metrics.json`` with every field the contract requires.

    ``metrics`` holds scalars that become table columns; ``provenance`` (from
    :func:`provenance`) says what the run actually used and becomes columns too;
    per-epoch curves and other arrays go in ``extra`` (kept in the JSON, left out of the
    table).
    """
    missing = [key for key in PROVENANCE_FIELDS + PROVENANCE_LENGTH_FIELDS if key not in provenance]
    if missing:
        raise ValueError(f"provenance of {experiment}/{run_id} lacks {missing}; build it with results.provenance()")
    record: dict[str, Any] = {
        "experiment": experiment,
        "run_id": run_id,
        "params": dict(params),
        "seed": seed,
        "metrics": dict(metrics),
        "wall_seconds": float(wall_seconds),
        "device": device,
        "versions": versions(),
        "provenance": dict(provenance),
    }
    if extra:
        record["extra"] = dict(extra)
    write_json_atomic(path, record)
    return record


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One table row: run_id, seed, then params, provenance, metrics, wall_seconds, device.

    A metric that shares a parameter's name overrides it, so a column is never doubled;
    a provenance key may not share a parameter's or a metric's name (a claim's protocol
    must never read a configured value for one actually used). A per-file data checksum
    mapping becomes one column per file (``data_sha256.<name>``). Non-scalar values
    (lists, dicts) are left out of the table.
    """
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise ValueError(f"metrics record lacks required fields {missing}")
    row: dict[str, Any] = {"run_id": record["run_id"], "seed": record["seed"]}
    for key, value in record["params"].items():
        if _is_scalar(value):
            row[key] = value
    provenance = dict(record["provenance"])
    clash = sorted(set(provenance) & (set(record["params"]) | set(record["metrics"])))
    if clash:
        raise ValueError(f"{record['run_id']}: provenance keys {clash} also appear among params or metrics")
    checksum = provenance.pop("data_sha256", None)
    if isinstance(checksum, Mapping):
        row.update({f"data_sha256.{name}": digest for name, digest in checksum.items()})
    else:
        row["data_sha256"] = checksum
    for key, value in provenance.items():
        if _is_scalar(value):
            row[key] = value
    for key, value in record["metrics"].items():
        if _is_scalar(value):
            row[key] = value
    row["wall_seconds"] = record["wall_seconds"]
    row["device"] = record["device"]
    return row


def aggregate_table(metric_files: Iterable[str | os.PathLike], output_csv: str | os.PathLike,
                    required_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Join ``metrics.json`` files into one CSV (one row per run), written atomically."""
    rows = [flatten_record(read_json(path)) for path in sorted(map(str, metric_files))]
    import pandas as pd  # here, not at the top: every job imports this module, few build tables

    table = pd.DataFrame(rows)
    missing = [column for column in required_columns if column not in table.columns]
    if missing:
        raise ValueError(f"table {output_csv} lacks contract columns {missing}")
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN in strict readers; store a non-finite number as null."""
    return float(value) if value is not None and math.isfinite(value) else None


def params_fingerprint(params: Mapping[str, Any]) -> str:
    """A stable short hash of a run's parameters (for checkpoint validity)."""
    import hashlib

    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
