"""The contract's results layout: metrics.json per job, one CSV table per experiment."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from rgbench.io import atomic_path, read_json, write_json_atomic
from rgbench.runtime import versions

REQUIRED_FIELDS = ("experiment", "run_id", "params", "seed", "metrics", "wall_seconds", "device", "versions")


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
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one job's ``metrics.json`` with every field the contract requires.

    ``metrics`` holds scalars that become table columns; per-epoch curves and other
    arrays go in ``extra`` (kept in the JSON, left out of the table).
    """
    record: dict[str, Any] = {
        "experiment": experiment,
        "run_id": run_id,
        "params": dict(params),
        "seed": seed,
        "metrics": dict(metrics),
        "wall_seconds": float(wall_seconds),
        "device": device,
        "versions": versions(),
    }
    if extra:
        record["extra"] = dict(extra)
    write_json_atomic(path, record)
    return record


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One table row: run_id, seed, device, wall_seconds, then params, then metrics.

    A metric that shares a parameter's name overrides it, so a column is never doubled.
    Non-scalar values (lists, dicts) are left out of the table.
    """
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise ValueError(f"metrics record lacks required fields {missing}")
    row: dict[str, Any] = {"run_id": record["run_id"], "seed": record["seed"]}
    for key, value in record["params"].items():
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


def load_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in paths]


def params_fingerprint(params: Mapping[str, Any]) -> str:
    """A stable short hash of a run's parameters (for checkpoint validity)."""
    import hashlib

    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
