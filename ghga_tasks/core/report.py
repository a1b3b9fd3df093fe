"""``ghga_report.tsv``: one row per planned file, in plan order, with what happened to it.

Built from the plan and the state records (``state``), never by reading the downloaded
files again: a resumed batch of terabytes is reported in milliseconds, and rows of files
completed by earlier runs keep their checksums.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import state
from .errors import FilesFailed, Interrupted
from .plan import PlanEntry, Status, plan_path, read_plan
from .resume import kept_note
from .work_package import PART_SUFFIX

if TYPE_CHECKING:
    import pandas as pd

REPORT_FILE = "ghga_report.tsv"
REPORT_COLUMNS = [
    "file_id",
    "file_name",
    "outcome",
    "bytes",
    "sha256",
    "seconds",
    "waited_seconds",
    "content_sha256",
    "started_at",
    "finished_at",
    "envelope_writer_key",
    "error",
    "reused_bytes",  # of a file resumed from its .part (resume_partial): not fetched again
]


def report_path(output_dir: Path) -> Path:
    return output_dir / REPORT_FILE


def write_report(output_dir: Path) -> pd.DataFrame:
    """One row per planned file, in plan order, from the plan and the state records."""
    import pandas as pd  # here: the download jobs that import this module never need it

    entries = read_plan(plan_path(output_dir))
    for entry in entries:
        if entry.to_download:
            state.seal_result(output_dir, entry.file_name)
    rows = [_report_row(output_dir, entry) for entry in entries]
    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    path = report_path(output_dir)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return frame


def write_report_after_failure(output_dir: Path) -> None:
    """The report of a run that stopped with failed files, if a plan was made.

    Dated a second before the plan: Snakemake sees a report newer than its inputs as done
    and would not even look for the missing files on the next run; a report older than
    the plan is re-made, after those files are downloaded.
    """
    plan = plan_path(output_dir)
    if not plan.exists():
        return
    write_report(output_dir)
    before_plan = plan.stat().st_mtime - 1
    os.utime(report_path(output_dir), (before_plan, before_plan))


def written_since(output_dir: Path, since: float) -> bool:
    """Whether the report was written (or re-dated) after ``since``: its inode changed
    then (``st_ctime``; its mtime may be set back, see ``write_report_after_failure``)."""
    try:
        return report_path(output_dir).stat().st_ctime >= since
    except FileNotFoundError:
        return False


def write_report_if_files_failed(output_dir: Path, *, since: float) -> None:
    """After a run (``since``: when it started) in which files failed, the report its
    report step could not write, unless someone wrote it already."""
    failures = state.failure_path(output_dir, "x").parent
    if not failures.is_dir() or all(p.stat().st_mtime < since for p in failures.iterdir()):
        return
    if not written_since(output_dir, since):
        write_report_after_failure(output_dir)


def files_failed(output_dir: Path) -> FilesFailed | None:
    """The failures of the files the current plan downloads (or decrypts), in plan order,
    as one error (None if none failed)."""
    entries = read_plan(plan_path(output_dir))
    planned = [e.file_name for e in entries if e.to_download]
    records = [r for name in planned if (r := state.read_failure(output_dir, name))]
    records += _decrypt_failures(output_dir, entries)
    if not records:
        return None
    return FilesFailed(
        errors=[str(r["error"]) for r in records], exit_codes=[int(r["exit_code"]) for r in records]
    )


STOPPED_BEFORE = "not downloaded: the run stopped before this file"


def _report_row(output_dir: Path, entry: PlanEntry) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(REPORT_COLUMNS, "")
    row.update(
        file_id=entry.file_id,
        file_name=entry.file_name,
        bytes=0,
        seconds=0.0,
        waited_seconds=0.0,
        reused_bytes=0,
        content_sha256=entry.sha256,
    )
    row.update(_outcome(output_dir, entry))
    return row


def _outcome(output_dir: Path, entry: PlanEntry) -> dict[str, Any]:
    """The outcome columns of one row."""
    if entry.status == Status.UNAVAILABLE:
        return {"outcome": "skipped_unavailable", "error": entry.reason}
    existing = state.existing_file(output_dir, entry.file_name)
    if entry.status == Status.PRESENT:
        # Nothing vouches for these bytes: no checksum, and the report says why.
        size = existing.size if existing is not None else 0
        return {"outcome": "skipped_downloaded", "bytes": size, "error": entry.reason}
    failure = state.read_failure(output_dir, entry.file_name)
    if failure is not None and entry.to_download:
        return {"outcome": "failed", "error": failure["error"]}
    if existing is not None and existing.result is not None:
        carried = {k: v for k, v in existing.result.items() if k in REPORT_COLUMNS}
        return {**{k: v for k, v in carried.items() if v is not None}, "outcome": "downloaded"}
    if existing is not None:  # under the final name, but no longer what was downloaded
        return {"outcome": "failed", "error": f"{existing.why_not}; delete it and run again"}
    return {"outcome": "failed", "error": STOPPED_BEFORE}


# --- the summary both front ends print at the end of a run ---------------------------------

INTERRUPTED = "interrupted"  # shown for a failure that was a stop request (Ctrl-C, SIGTERM)
NOT_STARTED = "not started"  # shown for a file the run ended before (it has no failure)


def summary_lines(output_dir: Path) -> list[str]:
    """The report as a compact table: each file's outcome, size and transfer time, the
    totals, and where the report is. Printed by the CLI and after every Snakemake run."""
    path = report_path(output_dir)
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    lines = ["Summary:"]
    counts: dict[str, int] = {}
    for row in rows:
        outcome = _shown_outcome(output_dir, row)
        counts[outcome] = counts.get(outcome, 0) + 1
        size = human_bytes(int(row["bytes"])) if row["bytes"] not in ("", "0") else ""
        seconds = _seconds(float(row["seconds"])) if outcome == "downloaded" else ""
        note = f"  {row['error']}" if row["error"] else ""
        lines.append(f"  {row['file_name']:<40} {outcome:<20} {size:>9} {seconds:>8}{note}")
    errors = {row["file_name"]: row["error"] for row in rows}
    kept = kept_partial_files(output_dir, rows)
    lines += [f"  {name}: {note}" for name, note in kept if note not in errors[name]]
    for failure in _decrypt_failures(output_dir, read_plan(plan_path(output_dir))):
        counts[DECRYPT_FAILED] = counts.get(DECRYPT_FAILED, 0) + 1
        lines.append(f"  {failure['file_name']:<40} {DECRYPT_FAILED:<20}  {failure['error']}")
    lines.append("  " + ", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    lines.append(f"Report: {path}")
    return lines


def kept_partial_files(
    output_dir: Path, rows: list[dict[str, str]] | None = None
) -> list[tuple[str, str]]:
    """Files of the report not downloaded whose ``.part`` stays for the next run to resume
    (``resume_partial``), each with a line saying how much of it is kept."""
    if rows is None:
        if not report_path(output_dir).exists():
            return []
        with report_path(output_dir).open(newline="") as stream:
            rows = list(csv.DictReader(stream, delimiter="\t"))
    names = [row["file_name"] for row in rows if row["outcome"] == "failed"]
    notes = [(name, kept_note(output_dir / (name + PART_SUFFIX), human_bytes)) for name in names]
    return [(name, note) for name, note in notes if note]


def interruption(output_dir: Path) -> Interrupted:
    """The error of a run stopped by Ctrl-C or SIGTERM, naming the partial files kept."""
    kept = kept_partial_files(output_dir)
    if len(kept) == 1:
        return Interrupted(kept=kept[0][1])
    if kept:
        return Interrupted(kept=f"{len(kept)} partial files kept; run again to resume")
    return Interrupted()


DECRYPT_FAILED = "decryption failed"


def _decrypt_failures(output_dir: Path, entries: list[PlanEntry]) -> list[dict[str, Any]]:
    """The last decrypt_file failure of each file the plan delivers, in plan order."""
    delivered = [entry.file_name for entry in entries if entry.delivered]
    return [
        record
        for name in delivered
        if (record := state.read_failure(output_dir, name, state.DECRYPT_STEP))
    ]


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 0.1 else "<0.1 s"


def _shown_outcome(output_dir: Path, row: dict[str, str]) -> str:
    if row["outcome"] != "failed":
        return row["outcome"]
    if row["error"] == STOPPED_BEFORE:
        return NOT_STARTED
    failure = state.read_failure(output_dir, row["file_name"])
    stopped = failure is not None and failure.get("exit_code") == Interrupted.exit_code
    return INTERRUPTED if stopped else "failed"


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
