"""Device choice, seeding, version stamps and logging: the per-job runtime context."""

from __future__ import annotations

import logging
import os
import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

LOGGER_NAME = "rgbench"


def pick_device(preference: str = "auto") -> "torch.device":  # noqa: F821
    """Return the torch device: CUDA when present (``auto``), or the one asked for.

    Asking for ``cuda`` on a machine without it is an error rather than a silent
    fall-back, so a cluster job that lost its GPU fails loudly.
    """
    import torch

    if preference not in {"auto", "cpu", "cuda"} and not preference.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {preference!r}")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} was requested but CUDA is not available")
    return torch.device(preference)


def describe_device(device: Any) -> str:
    """A human-readable device string for metrics.json (GPU model name on CUDA)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()}"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); make CPU kernels deterministic."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        deterministic_algorithms()
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor.config`` (which pulls in TorchDynamo: ~2 s of every job's start-up).

    That import only serves to set inductor's own ``deterministic`` flag, which matters to
    ``torch.compile``d code; no job compiles with inductor. Where inductor is already
    loaded the public call runs unchanged, so its flag is never left stale.
    """
    import torch

    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op pool to the threads Snakemake granted the job."""
    import torch

    if threads and threads > 0:
        torch.set_num_threads(int(threads))


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str | None]:
    """Versions of the stack that produced a result (contract field ``versions``)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for module in ("torch", "numpy", "snakemake"):
        try:
            found[module] = __import__(module).__version__
        except Exception:  # a missing optional package is recorded, not fatal
            found[module] = None
    found["rgbench"] = __import__("rgbench").__version__
    found["git_commit"] = git_commit(Path(__file__).resolve().parent)
    return found


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, when given, to the rule's ``log:`` file."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.handlers.clear()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """tqdm on stderr, quiet when stderr is not a terminal unless RGBENCH_PROGRESS=1.

    Rule logs capture stderr; a bar redrawn a thousand times per epoch would bury the
    log, so in batch jobs tqdm prints at most every 30 s.
    """
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or os.environ.get("RGBENCH_PROGRESS") == "1"
    kwargs.setdefault("mininterval", 0.5 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)
