"""The bridge between a Snakemake ``script:`` and the package.

Scripts stay thin: they open :func:`snakemake_job`, read inputs/outputs/params from it
and call one package function. The context sets up logging into the rule's log file,
pins torch threads to the rule's ``threads`` and logs any exception before re-raising
it, so a failed job's log says why.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from typing import Any, Iterator

from rgbench.runtime import set_threads, setup_logging


@contextlib.contextmanager
def snakemake_job(smk: Any, torch_threads: bool = True) -> Iterator[Any]:
    log_path = smk.log[0] if len(smk.log) else None
    logger = setup_logging(log_path)
    logger.info("rule %s started (threads=%s)", smk.rule, smk.threads)
    if torch_threads:
        set_threads(smk.threads)
    started = time.perf_counter()
    try:
        yield smk
    except BaseException as error:
        logger.error("rule %s failed: %s\n%s", smk.rule, error, traceback.format_exc())
        raise
    logger.info("rule %s finished in %.1f s", smk.rule, time.perf_counter() - started)
