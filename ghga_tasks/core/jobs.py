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
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from . import batch, state
from .decrypt import decrypt_downloaded
from .download import DownloadResult
from .errors import GhgaTasksError, Interrupted
from .plan import downloads_ahead, plan_path
from .report import write_report
from .settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger("ghga_tasks")


def plan(settings_json: str, log_file: Path) -> None:
    """The ``plan_downloads`` checkpoint: probe, write the plan, apply the skip policy."""
    with JobLog(log_file):
        batch.plan_and_apply_skip_policy(Settings.from_mapping(json.loads(settings_json)))


def report(output_dir: Path, log_file: Path) -> None:
    """The ``report`` rule: ghga_report.tsv from the plan and the result records."""
    with JobLog(log_file):
        write_report(output_dir)


def download(settings_file: Path, file_name: str, log_file: Path, gate: str = "") -> DownloadResult:
    """The ``download_file`` rule: one planned file, logged to ``log_file`` (``gate``: the
    release marker it waited for, see ``release``)."""
    with JobLog(log_file):
        settings = state.load_settings(settings_file)
        opened = batch.shared_work_package(settings)  # the plan's too, when it ran here
        # The next jobs are this process's too: their metadata overlaps this download.
        plan = plan_path(settings.output_dir)
        opened.api.fetch_ahead(downloads_ahead(plan, file_name, FETCH_AHEAD))
        return batch.download_one(settings, file_name, opened=opened, gate=gate)


FETCH_AHEAD = 4  # files whose metadata is fetched while one downloads (core/prefetch.py)


def decrypt(settings_file: Path, file_name: str, log_file: Path) -> None:
    """The ``decrypt_file`` rule: one downloaded file to ``decrypted_dir``, verified."""
    with JobLog(log_file, one_thread=True):
        decrypt_downloaded(state.load_settings(settings_file), file_name)


class JobLog:
    """Our log lines go to the job's log file (not Snakemake's output) while it runs.

    Downloads never run two at a time, so a download's handler on the ``ghga_tasks``
    logger takes every line (its connection threads' included) except those of jobs that
    keep to ``one_thread`` (decryptions, which may run beside it): those take only their
    own thread's lines.

    An error ends the job as one ``Error: …`` line, in its log and in Snakemake's output,
    and leaves with no traceback of our code (Snakemake prints an exception's frames; a
    class, not a generator: ``contextlib`` would put the traceback back). A stop request
    ends it as ``Interrupted``, said in the job log only: the front end ends the run with
    its own ``Interrupted:`` line.
    """

    def __init__(self, path: Path, *, one_thread: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(path, mode="w")
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
        self._thread = threading.get_ident()
        self._one_thread = one_thread
        self._logging = _jobs_logging()

    def __enter__(self) -> None:
        thread = self._thread
        if self._one_thread:
            _one_thread_jobs.add(thread)
            self._handler.addFilter(lambda record: record.thread == thread)
        else:
            self._handler.addFilter(lambda record: record.thread not in _one_thread_jobs)
        self._logging.__enter__()
        log.addHandler(self._handler)

    def __exit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        stopped = isinstance(error, KeyboardInterrupt | Interrupted)
        try:
            if stopped:
                log.info("Stopped: %s", error if isinstance(error, Interrupted) else Interrupted())
            self._logging.__exit__(None, None, None)  # Snakemake's output sees ours again
            if isinstance(error, GhgaTasksError) and not stopped:
                log.error("Error: %s", error)
        finally:
            log.removeHandler(self._handler)
            self._handler.close()
            _one_thread_jobs.discard(self._thread)
        if isinstance(error, KeyboardInterrupt):
            raise Interrupted() from None
        if isinstance(error, GhgaTasksError):
            error.__traceback__ = None  # re-raised as it is, from the ``with`` line


_one_thread_jobs: set[int] = set()  # threads of jobs that keep to their own lines


class _JobsLogging:
    """While any job runs, INFO lines go to the job logs only, not to Snakemake's output;
    the logger is put back as it was when the last running job ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._before = (logging.NOTSET, True)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._before = log.level, log.propagate
                log.setLevel(logging.INFO)
                log.propagate = False
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    log.setLevel(self._before[0])
                    log.propagate = self._before[1]


_jobs_logging = _JobsLogging()
