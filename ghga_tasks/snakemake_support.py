"""What the workflow's rules need from Snakemake beyond its documented Snakefile syntax.

Everything here reads or sets an attribute of Snakemake's ``workflow`` object that
Snakemake does not document as an API. It is kept in this one module, and
``tests/test_snakemake_support.py`` runs real Snakemake to check each of them, so a
Snakemake release that changes one fails loudly there instead of quietly here.

It also holds :func:`start_of_run`, the guarantees every run gets whatever the entry point
(the repository's Snakefile, a ``module`` in someone else's Snakefile, ``ghga-tasks
download``): the run lock on the output directory, downloads that stop at once on Ctrl-C
or SIGTERM, a warning when jobs are not threads, a report even when files failed, and
a summary of every file's outcome at the end.
Snakemake registers ``onstart`` and ``onerror`` only for the main Snakefile, so a module
would lose them all there; instead the workflow's input functions call
:func:`start_of_run` while Snakemake builds its DAG, in its main thread, before any job
starts, and what must happen at the end is left to ``atexit``.
"""

from __future__ import annotations

import atexit
import functools
import sys
import time
from pathlib import Path
from typing import Any

from ghga_tasks.core import release, shutdown
from ghga_tasks.core.errors import GhgaTasksError, OutputLocked
from ghga_tasks.core.locks import hold_run_lock
from ghga_tasks.core.report import (
    interruption,
    summary_lines,
    write_report_if_files_failed,
    written_since,
)

NO_THREADS_WARNING = (
    "ghga-tasks: each download job starts its own Snakemake process (slow for many files); "
    "run with --force-use-threads, as profiles/default does."
)


def is_main_process(workflow: Any) -> bool:
    """Snakemake's own process, not a job's process (``--force-use-threads`` off, a
    cluster job), where the workflow is loaded again for one job."""
    return str(workflow.exec_mode.name) == "DEFAULT"


def is_dry_run(workflow: Any) -> bool:
    return bool(workflow.dryrun)


def jobs_are_threads(workflow: Any) -> bool:
    """Whether ``run:`` jobs run as threads of this process (``--force-use-threads``)."""
    return bool(workflow.use_threads)


def limit_resource(workflow: Any, name: str, amount: int) -> None:
    """A global resource limit that wins over the command line (``--resources``)."""
    workflow.global_resources.update({name: amount})


def start_of_run(workflow: Any, output_dir: Path, logger: Any) -> None:
    """The run's guarantees; only in Snakemake's main process and not in a dry run (which
    writes nothing and may look at a running batch). Cheap to call again: Snakemake
    evaluates the input functions that call it for every job."""
    if is_main_process(workflow) and not is_dry_run(workflow):
        _guard_run(id(workflow), output_dir.resolve(), jobs_are_threads(workflow), logger)


@functools.cache
def _guard_run(_run: int, output_dir: Path, threads: bool, logger: Any) -> None:
    """Once per run (``_run``: the id of its workflow object, only a cache key)."""
    try:
        hold_run_lock(output_dir)
    except OutputLocked as error:  # one line naming the holder, not a Snakemake traceback
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    release.start_run(output_dir)  # this run's download jobs wait for their batch anew
    shutdown.watch_signals()
    if not threads:
        logger.warning(NO_THREADS_WARNING)
    atexit.register(_end_of_run, output_dir, time.time())


def _end_of_run(output_dir: Path, started: float) -> None:
    """After the run: the report, if files failed and its step could not run, and the
    summary, wherever Snakemake ran from (a module too), unless the caller prints it."""
    try:
        write_report_if_files_failed(output_dir, since=started)
        if _summary_at_exit and written_since(output_dir, started):
            lines = ["", *summary_lines(output_dir)]
            if shutdown.REQUESTED.is_set():  # Ctrl-C or SIGTERM: the CLI's last line too
                lines.append(f"Interrupted: {interruption(output_dir).detail}.")
            print("\n".join(lines), file=sys.stderr)
    except (GhgaTasksError, OSError, ValueError) as error:  # never a traceback at exit
        print(f"ghga-tasks: no summary: {error}", file=sys.stderr)


_summary_at_exit = [True]


def summary_printed_by_caller() -> None:
    """For ``ghga-tasks download``, which prints the summary itself."""
    _summary_at_exit.clear()
