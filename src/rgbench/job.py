"""The bridge between a Snakemake ``script:`` and the package.

Scripts stay thin: they open :func:`snakemake_job`, read inputs and outputs from it and
call one package function with ``job.config``, the rule's one config hand-off (the
``params: config=...`` mapping of exactly the keys that decide its outputs). The
context sets up logging into the rule's log file, pins torch threads to the rule's
``threads`` and logs any exception before re-raising it, so a failed job's log says why.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from typing import Any, Iterator, Mapping

from rgbench.io import write_json_atomic
from rgbench.phases import CLOCK, seconds_since_process_start, sidecar_path, watch_compilers
from rgbench.runtime import set_threads, setup_logging


class Job:
    """A Snakemake job as the package sees it: its files, its config and its device.

    ``device`` (like ``mnist_source``) is a run-time choice read from the workflow
    config, not part of the hand-off, so moving a run between machines reruns nothing.
    """

    def __init__(self, smk: Any) -> None:
        self.smk = smk
        self.input = smk.input
        self.output = smk.output
        self.wildcards = smk.wildcards
        self.threads = smk.threads
        self.rule = smk.rule

    @property
    def config(self) -> Mapping[str, Any]:
        params = self.smk.params
        if "config" not in params.keys():
            raise KeyError(f"rule {self.rule} passes no `params: config=...`")
        return params.config

    @property
    def device(self) -> str:
        return str(self.smk.config.get("device", "auto"))

    @property
    def workflow_config(self) -> Mapping[str, Any]:
        """The whole workflow config: only for locators (e.g. mnist_source), never for settings."""
        return self.smk.config


@contextlib.contextmanager
def snakemake_job(smk: Any, torch_threads: bool = True) -> Iterator[Job]:
    """The job's context; on success its phases (docs: rgbench.phases) go beside its log."""
    startup_s = seconds_since_process_start()
    CLOCK.start()
    watch_compilers()
    log_path = smk.log[0] if len(smk.log) else None
    logger = setup_logging(log_path)
    logger.info("rule %s started (threads=%s)", smk.rule, smk.threads)
    if torch_threads and "torch" in sys.modules:
        # A job that has not imported torch (numpy-only RGM jobs) is spared its ~1.5 s
        # import; should it import torch later, torch reads OMP_NUM_THREADS, which
        # Snakemake sets to the job's threads.
        set_threads(smk.threads)
    started = time.perf_counter()
    try:
        yield Job(smk)
    except BaseException as error:
        logger.error("rule %s failed: %s\n%s", smk.rule, error, traceback.format_exc())
        raise
    logger.info("rule %s finished in %.1f s", smk.rule, time.perf_counter() - started)
    phases = CLOCK.finish(startup_s)
    logger.info("phases: %s", ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
    if log_path:
        write_json_atomic(sidecar_path(log_path), {key: round(value, 3) for key, value in phases.items()})
