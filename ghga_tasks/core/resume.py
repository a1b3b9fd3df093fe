"""Resuming an interrupted download (``resume_partial: true``): the sidecar of a ``.part``.

Design notes:
- The sidecar ``<name>.part.resume`` is the only evidence that bytes of a ``.part`` are
  good. A range enters it only after it was written *and* ``fdatasync``-ed, and the
  sidecar is replaced whole (tmp + ``os.replace``), so after a SIGKILL or a power cut it
  names durable bytes only. Whatever it does not name is fetched again, whatever the
  ``.part`` holds there.
- It records what the bytes belong to: the file ID, the object's size and the archive's
  content checksum, the user's public key and the envelope's writer key and size.
  Anything different now (another object, a changed key) means starting over, and so does
  a sidecar that cannot be read or promises more than the ``.part`` holds: never a crash.
  The envelope's *bytes* cannot be compared: the archive seals every envelope with a
  fresh random nonce, so two fetches never match. The new envelope is written over the
  old one; with ``verify`` a recorded cipher segment must first decrypt with its key, so
  bytes of a re-encrypted object are not reused (``verify.segment_opens``).
- ``fdatasync`` flushes the whole file, so written bytes are recorded in batches: every
  SYNC_BYTES or SYNC_SECONDS, whichever comes first, and once more when the download stops
  (Ctrl-C, SIGTERM, a failed range). A SIGKILL loses at most the last batch. Without
  ``resume_partial`` none of this runs: the download path stays as fast as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .transfer import ByteRange, Prefix

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".resume"
SIDECAR_VERSION = 1
SYNC_BYTES = 16 * 1024 * 1024  # written bytes between two records, at most
SYNC_SECONDS = 1.0  # and at most this long between them while bytes arrive


def sidecar_path(part: Path) -> Path:
    """``X.c4gh.part`` -> ``X.c4gh.part.resume``."""
    return part.with_name(part.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class PartIdentity:
    """What the bytes of a ``.part`` belong to; a different value means starting over."""

    file_id: str
    object_size: int  # the DRS size: the encrypted object without envelope
    content_sha256: str  # the archive's checksum of the content ("" when it sent none)
    reader_key: str  # base64 of the user's public key, which the envelope is sealed for
    writer_key: str  # base64 of the key the archive wrote the envelope with
    envelope_size: int  # where the object starts in the .part


def merge(ranges: list[ByteRange]) -> list[ByteRange]:
    """Sorted, without overlaps or empty ranges; adjoining ranges become one."""
    merged: list[ByteRange] = []
    for current in sorted((r for r in ranges if len(r)), key=lambda r: r.start):
        if merged and current.start <= merged[-1].stop:
            last = merged.pop()
            current = ByteRange(last.start, max(last.stop, current.stop))
        merged.append(current)
    return merged


def total(ranges: list[ByteRange]) -> int:
    return sum(len(r) for r in ranges)


def write_sidecar(path: Path, identity: PartIdentity, ranges: list[ByteRange]) -> None:
    """Replace the sidecar whole: a record cut short would vouch for nothing."""
    record = {
        "version": SIDECAR_VERSION,
        **asdict(identity),
        "ranges": [[r.start, r.stop] for r in ranges],
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


class UnusableSidecar(Exception):
    """Why a sidecar's ranges cannot be reused (the message is the log line's reason)."""


def read_sidecar(path: Path) -> tuple[PartIdentity, list[ByteRange]]:
    """The identity and ranges a sidecar records, or :class:`UnusableSidecar`."""
    try:
        record = json.loads(path.read_text())
        if record.pop("version") != SIDECAR_VERSION:
            raise UnusableSidecar(f"{path.name} has another format version")
        ranges = [ByteRange(int(start), int(stop)) for start, stop in record.pop("ranges")]
        identity = PartIdentity(**record)
    except FileNotFoundError:
        raise UnusableSidecar(f"no {path.name} records which bytes reached the disk") from None
    # Whatever a damaged or foreign file provokes: not JSON, other fields, other types,
    # Infinity (OverflowError), absurd nesting (RecursionError).
    except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError,
            RecursionError) as error:  # fmt: skip
        raise UnusableSidecar(f"{path.name} is unreadable ({type(error).__name__})") from None
    if any(not 0 <= r.start < r.stop for r in ranges):
        raise UnusableSidecar(f"{path.name} records an empty or reversed range")
    return identity, ranges


def reusable_ranges(path: Path, identity: PartIdentity, part_size_on_disk: int) -> list[ByteRange]:
    """The recorded ranges of a sidecar that matches ``identity`` and its ``.part``;
    :class:`UnusableSidecar` names why not."""
    recorded, ranges = read_sidecar(path)
    for field, now in asdict(identity).items():
        before = getattr(recorded, field)
        if before != now:
            raise UnusableSidecar(f"it was written for {field} {before!r}, now {now!r}")
    ranges = merge(ranges)
    if any(r.start < 0 or r.stop > identity.object_size for r in ranges):
        raise UnusableSidecar(f"{path.name} records ranges outside the object")
    if ranges and identity.envelope_size + ranges[-1].stop > part_size_on_disk:
        raise UnusableSidecar("the .part is shorter than its sidecar records")
    return ranges


def kept_bytes(part: Path) -> int:
    """Bytes a later run can reuse from ``part`` (0: none, or no readable sidecar)."""
    if not part.exists():
        return 0
    try:
        return total(merge(read_sidecar(sidecar_path(part))[1]))
    except UnusableSidecar:
        return 0


def kept_note(part: Path, human: Callable[[float], str]) -> str:
    """``"512.0 MB kept in X.part; run again to resume"``, or "" when nothing is kept."""
    kept = kept_bytes(part)
    return f"{human(kept)} kept in {part.name}; run again to resume" if kept else ""


class DurableRanges:
    """The :class:`~ghga_tasks.core.transfer.Checkpoints` of a resumable ``.part``.

    Written bytes are counted from every connection's thread; when a batch is due, the
    thread that noticed takes a snapshot of what is written, ``fdatasync``-s the file and
    only then records the snapshot in the sidecar.
    """

    def __init__(
        self,
        fd: int,
        path: Path,
        identity: PartIdentity,
        recorded: list[ByteRange],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fd, self.path, self._identity = fd, path, identity
        self._recorded = recorded
        self.reused = total(recorded)  # bytes this download does not fetch again
        self._prefix: Prefix | None = None
        self._clock = clock
        self._unsynced = 0
        self._last_sync = clock()
        self._count_lock = threading.Lock()
        self._sync_lock = threading.Lock()

    @property
    def recorded(self) -> list[ByteRange]:
        return self._recorded

    @property
    def recorded_bytes(self) -> int:
        return total(self._recorded)

    def attach(self, prefix: Prefix) -> None:
        self._prefix = prefix

    def written(self, count: int) -> None:
        with self._count_lock:
            self._unsynced += count
            due = self._unsynced >= SYNC_BYTES or self._clock() - self._last_sync >= SYNC_SECONDS
            if due:
                self._unsynced, self._last_sync = 0, self._clock()
        if due:
            self.record()

    def record(self) -> None:
        """Make every byte written so far durable, then record it."""
        with self._sync_lock:
            if self._prefix is None:
                return
            written = self._prefix.take_written()  # before the sync: it covers all of these
            os.fdatasync(self._fd)
            self._recorded = merge(self._recorded + written)
            write_sidecar(self.path, self._identity, self._recorded)

    def record_at_stop(self) -> bool:
        """The last record, when the download stops without finishing; whether the
        ``.part`` is worth keeping. Best effort: a full disk keeps the last record."""
        try:
            self.record()
        except OSError as error:
            log.warning("%s: could not record the last bytes (%s)", self.path.name, error)
        return self.recorded_bytes > 0 and self.path.exists()

    def discard(self) -> None:
        """The ``.part`` is finished or worthless: its sidecar goes (before the ``.part``)."""
        self.path.unlink(missing_ok=True)


def open_durable(
    fd: int,
    part: Path,
    identity: PartIdentity,
    check: Callable[[list[ByteRange]], str] = lambda _ranges: "",
) -> DurableRanges:
    """The checkpoints of the locked, not truncated ``part`` (open as ``fd``): with the
    ranges its sidecar records if that matches ``identity``, the ``.part`` and ``check``
    (which returns why the bytes are not reusable, or ""). Otherwise the ``.part`` is
    emptied, the sidecar removed, and one line says why."""
    path = sidecar_path(part)
    try:
        recorded = reusable_ranges(path, identity, os.fstat(fd).st_size)
        problem = check(recorded)
        if problem:
            raise UnusableSidecar(problem)
    except UnusableSidecar as why:
        if os.fstat(fd).st_size or path.exists():
            log.info("%s: starting over: %s", part.name, why)
        os.ftruncate(fd, 0)
        path.unlink(missing_ok=True)
        recorded = []
    return DurableRanges(fd, path, identity, recorded)
