"""Download jobs are released to Snakemake a batch at a time, in plan order (issue 17).

Snakemake's greedy scheduler weighs every *ready* job in every scheduling round. After the
plan checkpoint every download job used to be ready at once, so each round cost time in
proportion to the files still waiting and the batch as a whole grew quadratically
(docs/benchmarks.md, S8). Now each download job also takes its batch's *release marker*
as input: the files at plan positions ``k*B .. k*B+B-1`` wait for marker ``k``.

- Marker ``k`` is the output of a job of its own (rule ``release_downloads``, which has no
  code: Snakemake creates the file), whose only input is marker ``k-1``. It never depends
  on a download, so a failed download blocks nothing.
- Release jobs have the lowest priority and take the ``downloads`` resource, so Snakemake
  runs one only when no released download is waiting: at most ``B`` downloads and one
  release job are ever ready, and the files still go one at a time in plan order.

Markers live in ``<output_dir>/.ghga_tasks/release/<run>/<k>``, and every Snakemake run
takes a new ``<run>`` when it takes the run lock: files a re-run still has to download
wait for their batch again (reusing markers would make them all ready at once). Markers
of earlier runs are kept, because a file's result record names the marker it waited for
(its *gate*) and the file keeps that gate for good: Snakemake re-runs a job whose set of
input files changed (rerun trigger ``input``), and a finished file must never be
downloaded again because its batch number changed. A file completed before gates existed
has none in its record, and still gets none.

``GHGA_TASKS_RELEASE_BATCH`` overrides ``B`` (tests use small batches); every process of a
run must see the same value, as the environment of its jobs does.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from . import state
from .errors import ConfigurationError
from .plan import download_ranks, plan_path

RELEASE_DIR = "release"
RUN_FILE = "release_run"  # the current run's name, in the state folder
BATCH = 25  # files per release: ready jobs stay <= BATCH + 1 (measurements: docs/benchmarks.md)
BATCH_VARIABLE = "GHGA_TASKS_RELEASE_BATCH"
NO_RUN = "0"  # before any run took the lock (a dry run only looks)


def batch_size() -> int:
    value = os.environ.get(BATCH_VARIABLE, "").strip()
    if not value:
        return BATCH
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(setting=BATCH_VARIABLE, problem=f"{value!r} is not a number >= 1")
    return int(value)


def marker(run: str, index: int) -> str:
    """A release marker, relative to the output directory."""
    return f"{state.STATE_DIR}/{RELEASE_DIR}/{run}/{index}"


def previous_marker(run: str, index: int) -> str:
    """What marker ``index`` waits for ("" for the first)."""
    return marker(run, index - 1) if index > 0 else ""


def start_run(output_dir: Path) -> str:
    """Name a new run (once per Snakemake run, by the process that holds the run lock)."""
    run = uuid.uuid4().hex[:16]
    path = output_dir / state.STATE_DIR / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(run + "\n")
    os.replace(tmp, path)
    return run


def current_run(output_dir: Path) -> str:
    """The run that took the lock last (every process of a run reads the same name)."""
    path = output_dir / state.STATE_DIR / RUN_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return NO_RUN
    return _read_run(str(path), stat.st_ino, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_run(path: str, _inode: int, _mtime_ns: int) -> str:
    run = Path(path).read_text().strip()
    return run if run.isalnum() else NO_RUN


def gate(output_dir: Path, file_name: str) -> str:
    """The marker ``file_name``'s download waits for, relative to ``output_dir`` ("" for
    none): the one its result record names if it was ever completed, else its batch's
    marker in this run when the plan says to download it."""
    record = state.read_result(output_dir, file_name)
    if record is not None:
        recorded = record.get("gate", "")
        return recorded if isinstance(recorded, str) else ""
    plan = plan_path(output_dir)
    if not plan.exists():
        return ""
    ranks = download_ranks(plan)
    rank = ranks.get(file_name)
    if rank is None:
        return ""
    position = len(ranks) - rank  # ranks count down from the first file to download
    return marker(current_run(output_dir), position // batch_size())


def given_gate(output_dir: str, inputs: Sequence[str]) -> str:
    """The gate a download job was given (its ``release`` input: none or one path under
    ``output_dir``), relative to ``output_dir`` as :func:`gate` names it."""
    prefix = f"{output_dir}/"
    for path in map(str, inputs):
        return path[len(prefix) :] if path.startswith(prefix) else path
    return ""
