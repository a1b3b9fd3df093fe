"""The workflow's jobs run inside the Snakemake process (``run:`` jobs in threads).

As its own ``ghga-tasks step download`` process a download job paid Python's start-up
and imports for every file (0.4-1 s); as a thread of Snakemake it costs milliseconds,
and the work package is loaded once per process instead of once per file (benchmarks
S3b, S4). Plan and report save the same start-up once per run. Everything else is the
step commands': the job's log file gets the same lines, an error is one ``Error: …``
line there, and Ctrl-C or SIGTERM removes the ``.part`` (``shutdown``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from . import batch, state
from .download import DownloadResult
from .errors import GhgaTasksError, Interrupted
from .report import write_report
from .settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger("ghga_tasks")


def plan(settings_json: str, log_file: Path) -> None:
    """The ``plan_downloads`` checkpoint: probe, write the plan, apply the skip policy."""
    with job_log(log_file):
        batch.plan_and_apply_skip_policy(Settings.from_mapping(json.loads(settings_json)))


def report(output_dir: Path, log_file: Path) -> None:
    """The ``report`` rule: ghga_report.tsv from the plan and the result records."""
    with job_log(log_file):
        write_report(output_dir)


def download(settings_file: Path, file_name: str, log_file: Path, gate: str = "") -> DownloadResult:
    """The ``download_file`` rule: one planned file, logged to ``log_file`` (``gate``: the
    release marker it waited for, see ``release``)."""
    with job_log(log_file):
        settings = state.load_settings(settings_file)
        return batch.download_one(
            settings, file_name, opened=_opened(settings, _ghga_env()), gate=gate
        )


@functools.lru_cache(maxsize=4)
def _opened(settings: Settings, _env: tuple[tuple[str, str], ...]) -> batch.OpenWorkPackage:
    """The work package once per process, for as long as settings and ``GHGA_*``
    variables stay the same (``_env`` only keys the cache)."""
    return batch.open_work_package(settings)


def _ghga_env() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("GHGA_")))


@contextlib.contextmanager
def job_log(path: Path) -> Iterator[None]:
    """Our log lines go to the job's log file (not Snakemake's output) while it runs.

    Downloads never run two at a time, so one handler on the ``ghga_tasks`` logger
    catches exactly this job's lines, its connection threads' included.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    before = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    except GhgaTasksError as error:
        log.error("Error: %s", error)
        # Snakemake prints the message with the traceback: ours says nothing to a user.
        raise error.with_traceback(None) from None
    except KeyboardInterrupt:
        interrupted = Interrupted()
        log.error("Error: %s", interrupted)
        raise interrupted from None
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(before[0])
        log.propagate = before[1]
