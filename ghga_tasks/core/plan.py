"""The download plan: probe every file once, classify it, and order the batch.

Probing all files up front is the point: the archive starts staging a file when it is
first asked for it, so asking for all of them at once lets staging overlap downloads
(the official client asks for the next file only after the previous one is on disk).

Order: staged files first (input order), then staging files by shortest Retry-After,
then files that will not be downloaded: ``downloaded`` (completed by ghga-tasks, as its
state records vouch), ``present`` (under the final name, but nothing vouches for it: the
skip policy decides) and ``unavailable``.

One file never decides for the others: a file GHGA refuses (no work order token for it,
404 ``noSuchObject``) or whose probe keeps failing is ``unavailable`` with its reason in
the plan, and the skip policy decides about it like any unavailable file. Only when every
probe failed is that the run's error: then the API itself is the problem.
"""

from __future__ import annotations

import csv
import functools
import logging
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from . import state
from .api import PARALLEL_REQUESTS, DownloadApi, ProbeResult, Staged, Staging, Unavailable
from .errors import ApiError, AuthorizationError, Cancelled, ConfigurationError
from .work_package import (
    C4GH_SUFFIX,
    PART_SUFFIX,
    FileSpec,
    dotted_extension,
    validate_file_id,
)

log = logging.getLogger(__name__)

PLAN_FILE = "ghga_plan.tsv"
ENVELOPE_SIZE = 124  # bytes each downloaded file has on top of its DRS size


class Status(StrEnum):
    STAGED = "staged"
    STAGING = "staging"
    UNAVAILABLE = "unavailable"
    DOWNLOADED = "downloaded"  # completed by ghga-tasks: a finished target
    PRESENT = "present"  # a file under the final name that ghga-tasks cannot vouch for


@dataclass(frozen=True)
class PlanEntry:
    file_id: str
    extension: str
    file_name: str
    status: Status
    retry_after: float  # seconds; 0 unless staging
    size: int  # encrypted object size when staged, else -1 (unknown)
    sha256: str  # the archive's checksum of the decrypted content, "" when unknown
    # Staging only: the wall-clock time (epoch seconds) the probe's Retry-After points at.
    # A later probe may round its Retry-After up; the download job need not wait longer.
    retry_at: float = 0.0
    reason: str = ""  # unavailable or present: why, in the archive's or our words

    @property
    def to_download(self) -> bool:
        return self.status in (Status.STAGED, Status.STAGING)

    @property
    def delivered(self) -> bool:
        """The run hands this file over: it downloads it, or it was finished before."""
        return self.to_download or self.status == Status.DOWNLOADED


PLAN_COLUMNS = [name for name in PlanEntry.__dataclass_fields__]
OPTIONAL = {"retry_at", "reason"}  # plans written before they existed are still read


def plan_path(output_dir: Path) -> Path:
    return output_dir / PLAN_FILE


def classify(spec: FileSpec, probe: ProbeResult | state.Existing) -> PlanEntry:
    """One plan row from a probe result, or from the file already under the final name."""
    status, retry_after, size, sha256, reason = Status.DOWNLOADED, 0.0, -1, "", ""
    if isinstance(probe, state.Existing) and not probe.vouched:
        status, reason = Status.PRESENT, f"present, not verified: {probe.why_not}"
        reason += f" ({probe.size} bytes)"
    elif isinstance(probe, Unavailable):
        status, reason = Status.UNAVAILABLE, probe.reason
    elif isinstance(probe, Staged):
        status, size, sha256 = Status.STAGED, probe.size, probe.sha256 or ""
    elif isinstance(probe, Staging):
        status, retry_after = Status.STAGING, probe.retry_after
    return PlanEntry(
        spec.file_id, spec.extension, spec.file_name, status, retry_after, size, sha256,
        retry_at=time.time() + retry_after if status == Status.STAGING else 0.0,
        reason=reason,
    )  # fmt: skip


def order_entries(entries: list[PlanEntry]) -> list[PlanEntry]:
    """Staged first, then staging by shortest wait, then the rest; stable by input order."""
    rank = {
        Status.STAGED: 0,
        Status.STAGING: 1,
        Status.DOWNLOADED: 2,
        Status.PRESENT: 3,
        Status.UNAVAILABLE: 4,
    }
    return sorted(entries, key=lambda e: (rank[e.status], e.retry_after))


def plan_downloads(
    files: tuple[FileSpec, ...], api: DownloadApi, output_dir: Path
) -> list[PlanEntry]:
    """Probe every file not yet in ``output_dir`` (in parallel) and return the ordered plan."""
    existing = {spec: state.existing_file(output_dir, spec.file_name) for spec in files}
    to_probe = [spec for spec in files if existing[spec] is None]
    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS, thread_name_prefix="probe") as pool:
        outcomes = list(pool.map(lambda s: _probe_isolated(api, s.file_id), to_probe))
    failures = [outcome for outcome in outcomes if isinstance(outcome, ApiError)]
    if failures and len(failures) == len(outcomes):
        raise failures[0]  # not one file answered: the API is down or misconfigured
    seen: dict[FileSpec, ProbeResult | state.Existing] = {
        spec: found for spec, found in existing.items() if found is not None
    }
    for spec, outcome in zip(to_probe, outcomes, strict=True):
        if isinstance(outcome, ApiError):
            outcome = Unavailable(f"probe failed: {outcome}")
        seen[spec] = outcome
    entries = [classify(spec, seen[spec]) for spec in files]
    for entry in entries:
        log.info("%s: %s%s", entry.file_name, entry.status, _detail(entry))
    warn_if_short_of_space(entries, output_dir)
    return order_entries(entries)


def _probe_isolated(api: DownloadApi, file_id: str) -> ProbeResult | ApiError:
    """Probe one file; its failure is returned, not raised, so the others go on.

    GHGA refusing the file (no work order token for it: "File not available for
    download") makes it unavailable. Any other anticipated failure (errors persisting
    through the retries, the Download API refusing even a fresh token) is returned for
    the caller to weigh: one such file is unavailable, all of them are the run's error.
    """
    try:
        return api.probe_object(file_id)
    except AuthorizationError as refused:
        if refused.url.startswith(api.base_url):
            return refused  # the Download API itself: tokens or clocks, not this file
        return Unavailable(reason=refused.problem)
    except ApiError as failed:
        return failed


def _detail(entry: PlanEntry) -> str:
    if entry.status == Status.STAGING:
        return f" (retry after {entry.retry_after:.0f} s)"
    return f" ({entry.reason})" if entry.reason else ""


def bytes_needed(entries: list[PlanEntry], output_dir: Path) -> int:
    """Disk space the files known so far still need: envelope plus object for each staged
    one (files still staging have no size yet), less what an interrupted download's
    ``.part`` already holds (resumed, or freed when it is replaced)."""
    return sum(
        max(0, e.size + ENVELOPE_SIZE - _bytes_on_disk(output_dir / (e.file_name + PART_SUFFIX)))
        for e in entries
        if e.to_download and e.size >= 0
    )


def _bytes_on_disk(path: Path) -> int:
    """Bytes the file occupies (a ``.part`` is written at offsets: it may be sparse); 0
    if it cannot be looked at (an estimate is no reason to stop: the download says why)."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


def warn_if_short_of_space(entries: list[PlanEntry], output_dir: Path) -> int:
    """Warn before anything downloads if the staged files alone do not fit; return the
    bytes they need (files still staging have no known size yet and need more)."""
    needed = bytes_needed(entries, output_dir)
    directory = next(
        p for p in (output_dir.absolute(), *output_dir.absolute().parents) if p.exists()
    )
    free = shutil.disk_usage(directory).free
    if needed > free:
        log.warning(
            "not enough free space: the staged files need %d bytes, %d are free in %s; "
            "downloads will fail with 'no space left' once it is used up",
            needed,
            free,
            directory,
        )
    return needed


def apply_skip_policy(
    entries: list[PlanEntry], *, skip_downloaded: bool, skip_unavailable: bool
) -> None:
    """Report files that won't be downloaded; cancel unless the policy says skip them."""
    for status, skip, key in (
        (Status.PRESENT, skip_downloaded, "skip_downloaded"),
        (Status.UNAVAILABLE, skip_unavailable, "skip_unavailable"),
    ):
        listed = [e for e in entries if e.status == status]
        if not listed:
            continue
        names = [e.file_name for e in listed]
        what = SKIP_HEADINGS[status]
        log.warning("%d file(s) %s:", len(names), what)
        for entry in listed:
            log.warning("  %s: %s", entry.file_name, entry.reason)
        if not skip:
            raise Cancelled(
                f"{len(names)} file(s) {what}: {', '.join(names)}; "
                f"set {key}: true to skip them, or remove them from the batch"
            )
        log.warning("skipping them (%s: true)", key)


SKIP_HEADINGS = {
    Status.PRESENT: "already in the output directory, not written by ghga-tasks "
    "(present, not verified)",
    Status.UNAVAILABLE: "not available for download",
}


def write_plan(entries: list[PlanEntry], path: Path) -> None:
    # Imported here, after the probes: staging starts ~0.35 s sooner, and the step
    # processes that only read the plan never pay for pandas.
    import pandas as pd

    frame = pd.DataFrame([asdict(e) for e in entries], columns=PLAN_COLUMNS)
    frame["status"] = frame["status"].astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, sep="\t", index=False)
    tmp.replace(path)


def read_plan(path: Path) -> list[PlanEntry]:
    """Read a plan written by ``write_plan``; a damaged file is a clear error.

    Parsed once per version of the file: Snakemake asks for the plan once per download
    job (``download_priority``), and parsing 10,000 rows 10,000 times took half an hour
    (benchmark S5). ``write_plan`` replaces the file, so a new plan has a new inode.
    """
    return list(_parse_plan(*_version(path)))


def planned_entries(path: Path) -> dict[str, PlanEntry]:
    """The plan's rows by file name, built once per version of the plan: every download
    job looks up its own row (a walk over 10,000 rows per file grew with the batch)."""
    return _by_name(*_version(path))


@functools.lru_cache(maxsize=4)
def _by_name(path: str, inode: int, mtime_ns: int, size: int) -> dict[str, PlanEntry]:
    return {e.file_name: e for e in _parse_plan(path, inode, mtime_ns, size)}


def delivered_names(entries: list[PlanEntry], extension: str = "") -> list[str]:
    """What a run delivers, in plan order, as decrypted names (``GHGAF1.bam`` for
    ``GHGAF1.bam.c4gh``): the files it downloads and those finished before. Skipped and
    unavailable files are not among them (the report says why). With ``extension``, only
    names that end with it, given without it (``GHGAF1``), ready for ``expand``."""
    names = [entry.file_name.removesuffix(C4GH_SUFFIX) for entry in entries if entry.delivered]
    if not extension:
        return names
    return [name.removesuffix(extension) for name in names if name.endswith(extension)]


def downloads_after(entries: list[PlanEntry], file_name: str, count: int) -> list[str]:
    """The file IDs of the next ``count`` files to download after ``file_name``, in plan
    order (the files whose metadata may be fetched ahead while it downloads)."""
    names = [entry.file_name for entry in entries if entry.to_download]
    try:
        start = names.index(file_name) + 1
    except ValueError:
        return []
    by_name = {entry.file_name: entry.file_id for entry in entries}
    return [by_name[name] for name in names[start : start + count]]


def downloads_ahead(path: Path, file_name: str, count: int) -> list[str]:
    """The file IDs of the next ``count`` files after ``file_name`` still to be downloaded
    (no final file yet; a re-run keeps the plan of a run that completed some), in plan
    order: what :func:`downloads_after` gives for a fresh plan, with the order built once
    per version of the plan. Every download job asks, and a walk over the batch per file
    grew with it; the files looked at are bounded too."""
    files, position = _download_order(*_version(path))
    index = position.get(file_name)
    if index is None:
        return []
    ahead = []
    for file_id, name in files[index + 1 : index + 1 + AHEAD_LOOKED_AT * count]:
        if not (path.parent / name).exists():
            ahead.append(file_id)
            if len(ahead) == count:
                break
    return ahead


AHEAD_LOOKED_AT = 4  # downloads_ahead looks at most this many times ``count`` files on


@functools.lru_cache(maxsize=4)
def _download_order(
    path: str, inode: int, mtime_ns: int, size: int
) -> tuple[tuple[tuple[str, str], ...], dict[str, int]]:
    entries = [e for e in _parse_plan(path, inode, mtime_ns, size) if e.to_download]
    order = tuple((e.file_id, e.file_name) for e in entries)
    return order, {e.file_name: i for i, e in enumerate(entries)}


def download_ranks(path: Path) -> dict[str, int]:
    """Snakemake priorities in plan order: the first file to download ranks highest.

    Built once per version of the plan, like the rows: every download job asks.
    """
    return _ranks(*_version(path))


def _version(path: Path) -> tuple[str, int, int, int]:
    try:
        stat = path.stat()
    except OSError as error:
        raise ConfigurationError(setting=str(path), problem=f"unreadable plan ({error})") from None
    return str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _ranks(path: str, inode: int, mtime_ns: int, size: int) -> dict[str, int]:
    names = [e.file_name for e in _parse_plan(path, inode, mtime_ns, size) if e.to_download]
    return {name: len(names) - index for index, name in enumerate(names)}


@functools.lru_cache(maxsize=4)
def _parse_plan(path: str, inode: int, mtime_ns: int, size: int) -> tuple[PlanEntry, ...]:
    """The plan's rows; the arguments after ``path`` only key the cache.

    Read with the csv module, not pandas: every process that loads the workflow reads it
    (dry runs included, for the priorities), as does every step process, and pandas'
    import alone costs ~0.4 s.
    """
    try:
        with open(path, newline="") as stream:
            entries = _plan_rows(csv.reader(stream, delimiter="\t"))
    except (OSError, ValueError, KeyError, csv.Error) as error:
        raise ConfigurationError(setting=path, problem=f"unreadable plan ({error})") from None
    for entry in entries:
        _check_names(entry, setting=path)
    return tuple(entries)


def _plan_rows(rows: Iterator[list[str]]) -> list[PlanEntry]:
    header = next(rows, [])
    missing = [name for name in PLAN_COLUMNS if name not in header and name not in OPTIONAL]
    if missing:
        raise ValueError(f"no column {missing[0]!r}")
    column = {name: header.index(name) for name in PLAN_COLUMNS if name in header}
    entries = []
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"line {line} has {len(row)} fields, the header {len(header)}")
        value = {name: row[index] for name, index in column.items()}
        entries.append(
            PlanEntry(
                file_id=value["file_id"],
                extension=value["extension"],
                file_name=value["file_name"],
                status=Status(value["status"]),
                retry_after=float(value["retry_after"]),
                size=int(value["size"]),
                sha256=value["sha256"],
                retry_at=float(value.get("retry_at", 0.0)),
                reason=value.get("reason", ""),
            )
        )
    return entries


def _check_names(entry: PlanEntry, *, setting: str) -> None:
    """A plan row's names become paths: hold them to the work package's rules."""
    spec = FileSpec(validate_file_id(entry.file_id, setting=setting), entry.extension)
    if spec.file_name != entry.file_name or dotted_extension(entry.extension) != entry.extension:
        raise ConfigurationError(
            setting=setting, problem=f"row {entry.file_id[:80]!r} names another file"
        )
