"""Downloading one file: wait for staging, write ``<name>.part``, check, rename.

The promise: a file named ``<file_id><ext>.c4gh`` is always complete (envelope plus every
byte of the object, size-checked, and with ``verify: true`` decrypted and compared with
the archive's SHA-256). Anything else ends with the ``.part`` deleted and an error raised:
a failed range, a full disk, a corrupt byte, Ctrl-C or SIGTERM (the CLI turns SIGTERM
into an exception, so the same cleanup runs). With ``resume_partial`` the ``.part`` is kept
instead, when its sidecar records durable bytes a later run can reuse (``resume``); a
corrupt byte still deletes it.

An existing final file is never replaced: the checked ``.part`` is *linked* into place,
which fails rather than replaces if a file appeared meanwhile.

The job holds an exclusive lock on its ``.part`` from open to rename (see ``locks``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from . import shutdown
from .api import DownloadApi, Staged, Staging, Unavailable, make_session
from .envelope import b64, check_writer
from .errors import (
    ApiError,
    IntegrityError,
    LocalStorageError,
    NoSpaceLeft,
    OutputExists,
    StagingTimeout,
)
from .locks import is_current, open_locked_part, remove_if_current
from .report import human_bytes
from .resume import DurableRanges, PartIdentity, kept_note, open_durable, sidecar_path
from .settings import Settings
from .transfer import (
    ByteRange,
    IdleSessions,
    SessionPool,
    TransferPlan,
    UrlSource,
    download_ranges,
    pwrite_all,
)
from .verify import FileChecker, SegmentDecryptor, check_key_pair, segment_opens, session_key
from .work_package import FileSpec, WorkPackage
from .wps import private_key_for_tokens

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 10.0  # seconds between progress lines in the job log
# Local write failures: the user's file system, not GHGA, so they get their own error.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_LOCAL_FAILURES = (errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


@dataclass(frozen=True)
class DownloadResult:
    file_id: str
    file_name: str
    bytes: int  # size of the .c4gh file
    sha256: str  # of the .c4gh file
    seconds: float  # transfer time, without the staging wait
    waited_seconds: float  # time spent waiting for staging
    content_sha256: str | None  # the archive's checksum of the decrypted content
    started_at: float  # wall clock (epoch seconds) when the job began, staging wait included
    finished_at: float  # wall clock when the file got its final name
    envelope_writer_key: str = ""  # base64 of the key GHGA wrote the envelope with
    mtime_ns: int = 0  # of the final file when it got its name: the state record's check
    reused_bytes: int = 0  # object bytes taken from a resumed .part instead of fetched


@dataclass(frozen=True)
class Target:
    """Where one file goes; the one place that knows the ``.part`` naming."""

    final: Path
    part: Path

    @classmethod
    def for_file(cls, spec: FileSpec, output_dir: Path) -> Target:
        return cls(final=output_dir / spec.file_name, part=output_dir / spec.part_name)


def wait_until_staged(
    api: DownloadApi,
    file_id: str,
    *,
    max_wait_time: float,
    retry_at: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = shutdown.sleep,
) -> tuple[Staged, float]:
    """Probe until the file is staged, honouring Retry-After; return it and the wait.

    ``retry_at``: when an earlier probe (the plan's) said to come back. A Retry-After is
    whole seconds, rounded up, so a later probe may name a time after that one; the
    earlier promise wins (up to a second sooner), never a time before it.
    """
    start = clock()
    deadline = start + max_wait_time
    while True:
        result = api.probe_object(file_id)
        now = clock()
        match result:
            case Staged():
                return result, now - start
            case Unavailable(reason=reason):
                raise ApiError(
                    url=api.base_url,
                    file_id=file_id,
                    status_code=404,
                    problem=f"not available for download: {reason}",
                )
            case Staging(retry_after=retry_after):
                if now >= deadline:
                    raise StagingTimeout(
                        file_id=file_id, waited_seconds=now - start, max_wait_time=max_wait_time
                    )
                pause = max(retry_after, 0.5)
                promised = retry_at - wall_clock()
                if promised > 0:
                    pause = min(pause, max(promised, 0.1))
                pause = min(pause, deadline - now)
                log.info("%s is being staged, probing again in %.1f s", file_id, pause)
                sleep(pause)


def download_file(
    spec: FileSpec,
    work_package: WorkPackage,
    settings: Settings,
    api: DownloadApi,
    *,
    retry_at: float = 0.0,
) -> DownloadResult:
    """Download one file of the work package into ``settings.output_dir`` (``retry_at``:
    when the plan's probe said a staging file will be ready)."""
    started_at = time.time()
    target = Target.for_file(spec, settings.output_dir)
    if target.final.exists():
        raise OutputExists(path=str(target.final))
    private_key = private_key_for_verify(settings, work_package)  # fail before waiting
    staged, waited = wait_until_staged(
        api, spec.file_id, max_wait_time=settings.max_wait_time, retry_at=retry_at
    )
    if waited:
        log.info("%s: waited %.0f s for staging", spec.file_id, waited)
    envelope = api.fetch_envelope(spec.file_id)
    writer = check_writer(
        envelope,
        work_package.ghga_public_key,
        setting=work_package.ghga_public_key_setting,
        file_id=spec.file_id,
    )
    key = session_key(envelope, private_key, file_id=spec.file_id) if private_key else None
    identity = PartIdentity(
        spec.file_id, staged.size, staged.sha256 or "", b64(work_package.user_public_key),
        b64(writer), len(envelope),
    )  # fmt: skip
    started = time.monotonic()
    sha256, reused = _transfer(target, envelope, staged, api, settings, identity=identity, key=key)
    seconds = time.monotonic() - started
    size = len(envelope) + staged.size
    log.info(
        "%s: downloaded %d bytes in %.1f s (%.1f MB/s) to %s%s%s",
        spec.file_id, size, seconds, (size - reused) / max(seconds, 1e-6) / 1e6, target.final,
        f", {reused} of them reused from the .part" if reused else "",
        ", decrypted and verified" if key else "",
    )  # fmt: skip
    return DownloadResult(
        spec.file_id, spec.file_name, size, sha256, seconds, waited, staged.sha256,
        started_at, time.time(), b64(writer), target.final.stat().st_mtime_ns, reused,
    )  # fmt: skip


def _transfer(
    target: Target,
    envelope: bytes,
    staged: Staged,
    api: DownloadApi,
    settings: Settings,
    *,
    identity: PartIdentity,
    key: bytes | None,
) -> tuple[str, int]:
    """Envelope + object into the locked ``.part``, checked, then the final name; return
    the file's SHA-256 and how many object bytes a resumed ``.part`` already held."""
    file_id = identity.file_id
    urls = UrlSource(staged.url, renew=lambda: _fresh_url(api, file_id))
    size = len(envelope) + staged.size
    with PartFile(target, resumable=settings.resume_partial) as part:
        durable = part.resume(identity, key) if settings.resume_partial else None
        reused = durable.reused if durable else 0
        ensure_free_space(target.part.parent, size - reused)
        sha256 = write_part(
            part, envelope, staged.size, urls, settings,
            file_id=file_id, session_key=key, expected_sha256=staged.sha256,
        )  # fmt: skip
        part.forget_resume()  # complete: from here on the .part is never kept
        finalize_part(part, expected_size=size, file_id=file_id)
    return sha256, reused


def _fresh_url(api: DownloadApi, file_id: str) -> str:
    result = api.probe_object(file_id)
    if not isinstance(result, Staged):
        raise ApiError(url=api.base_url, file_id=file_id, problem="file is no longer staged")
    return result.url


def private_key_for_verify(settings: Settings, work_package: WorkPackage) -> bytes | None:
    """The user's private key when ``verify`` is on, checked against the public key.

    A passphrase-protected key is opened with ``GHGA_KEY_PASSPHRASE``, as for tokens:
    download jobs run unattended and cannot prompt.
    """
    if not settings.verify:
        return None
    private_key = private_key_for_tokens(settings, os.environ)
    check_key_pair(private_key, work_package.user_public_key)
    return private_key


def ensure_free_space(directory: Path, needed: int) -> None:
    """Fail before downloading when the file system cannot take ``needed`` more bytes."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise NoSpaceLeft(path=str(directory), needed=needed, free=free)


class PartFile:
    """The locked ``.part`` of one target, open for the whole download.

    On leaving with an error (Ctrl-C and SIGTERM included) the ``.part`` is deleted,
    unless it is no longer ours, or it is ``resumable`` and its sidecar records bytes a
    later run can reuse; the lock goes when the descriptor is closed.
    """

    def __init__(self, target: Target, *, resumable: bool = False) -> None:
        self.target = target
        self.fd = -1
        self.resumable = resumable  # a .part left by an earlier run is not emptied at open
        self.durable: DurableRanges | None = None
        self._settled = False  # kept or removed after a failure: decided once

    def __enter__(self) -> PartFile:
        with local_errors(self.target.part):
            self.target.part.parent.mkdir(parents=True, exist_ok=True)
            self.fd = open_locked_part(self.target.part, truncate=not self.resumable)
            if not self.resumable:  # left by an earlier run with resume_partial: stale now
                sidecar_path(self.target.part).unlink(missing_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.keep_or_remove(exc)
        os.close(self.fd)

    def resume(self, identity: PartIdentity, key: bytes | None) -> DurableRanges:
        """The ranges an earlier run recorded, when its sidecar matches (with ``key``, a
        recorded segment must decrypt too); otherwise the ``.part`` starts empty."""

        def opens_with_key(ranges: list[ByteRange]) -> str:
            if key is None or segment_opens(self.fd, identity.envelope_size, ranges, key):
                return ""
            return "its bytes do not decrypt with the file's key (the object was re-encrypted)"

        with local_errors(self.target.part):
            self.durable = open_durable(self.fd, self.target.part, identity, opens_with_key)
        if self.durable.reused:
            log.info(
                "%s: resuming %s: %d of %d bytes reused, fetching the rest",
                identity.file_id, self.target.part.name, self.durable.reused,
                identity.object_size,
            )  # fmt: skip
        return self.durable

    def forget_resume(self) -> None:
        """The ``.part`` is complete: its sidecar goes, and a failure now removes it."""
        if self.durable is not None:
            self.durable.discard()
            self.durable = None

    def keep_or_remove(self, error: BaseException) -> None:
        """After a failure: keep a resumable ``.part`` with its last bytes recorded, or
        delete it (always after a corrupt byte: those bytes must not be reused)."""
        if self._settled:
            return
        self._settled = True
        durable = None if isinstance(error, IntegrityError) else self.durable
        if durable is not None and durable.record_at_stop():
            log.warning("%s: %s", self.target.final.name, kept_note(self.target.part, human_bytes))
            return
        self.remove()

    def remove(self) -> None:
        """Delete the ``.part`` and its sidecar now (idempotent); writers may still finish
        into it."""
        if is_current(self.fd, self.target.part):
            sidecar_path(self.target.part).unlink(missing_ok=True)
        remove_if_current(self.fd, self.target.part)


@contextlib.contextmanager
def local_errors(path: Path) -> Iterator[None]:
    """Turn the file system's refusals into errors that say whose problem it is."""
    try:
        yield
    except OSError as error:
        if error.errno in _NO_SPACE:
            raise NoSpaceLeft(path=str(path.parent)) from error
        if error.errno in _LOCAL_FAILURES:
            raise LocalStorageError(path=str(path), problem=error.strerror or str(error)) from error
        raise


def write_part(
    part: PartFile,
    envelope: bytes,
    size: int,
    urls: UrlSource,
    settings: Settings,
    *,
    file_id: str,
    session_key: bytes | None = None,
    expected_sha256: str | None = None,
) -> str:
    """Write envelope + object into the locked ``.part``; return the file's SHA-256.

    With ``session_key`` the content is decrypted while it arrives and compared with
    ``expected_sha256``. On any failure the ``.part`` is removed at once, before the
    connections are wound down, so even a SIGKILL during that wait leaves none behind.
    A resumable ``.part`` is decided on after that wait, once its last bytes are written.
    """
    decryptor = SegmentDecryptor(session_key, file_id=file_id) if session_key else None
    checker = FileChecker(
        part.fd, envelope, file_id=file_id, decryptor=decryptor, expected_sha256=expected_sha256
    )
    sessions = SessionPool(
        lambda: make_session(retries=settings.range_retries), _idle_sessions(settings)
    )
    durable = part.durable
    plan = TransferPlan(
        connections=settings.connections,
        part_size=settings.part_size,
        timeout=(settings.connect_timeout, settings.read_timeout),
        retries=settings.range_retries,
    )
    try:
        with local_errors(part.target.part):
            pwrite_all(part.fd, envelope, 0)
            download_ranges(
                file_id=file_id, fd=part.fd, offset=len(envelope), size=size, urls=urls,
                sessions=sessions, plan=plan, on_bytes=_ProgressLog(file_id, size).add,
                follower=checker, on_failure=part.remove if durable is None else _keep,
                checkpoints=durable,
            )  # fmt: skip
            os.fsync(part.fd)
    except BaseException as error:
        part.keep_or_remove(error)
        sessions.close()  # a connection may hold half a response: never reuse it
        raise
    sessions.close(keep=True)
    return checker.hexdigest()


@functools.lru_cache(maxsize=2)
def _idle_sessions(settings: Settings) -> IdleSessions:
    """Object-store sessions kept between the files of this process (per settings: their
    retry policy is built in). Downloads run one at a time, so one file's worth is enough;
    a batch has one settings, so two caches are plenty (older ones are garbage)."""
    return IdleSessions(limit=settings.connections)


def _keep() -> None:
    """A resumable ``.part`` stays while the connections wind down."""


def finalize_part(part: PartFile, *, expected_size: int, file_id: str) -> None:
    """Check the ``.part`` is exactly the expected size and give it its final name,
    still holding its lock. Never replaces an existing file."""
    target = part.target
    actual = os.fstat(part.fd).st_size
    if actual != expected_size:
        raise IntegrityError(
            file_id=file_id, problem=f"{actual} bytes written, {expected_size} expected"
        )
    if not is_current(part.fd, target.part):
        raise IntegrityError(file_id=file_id, problem=f"{target.part} was moved or removed")
    try:
        os.link(target.part, target.final)
    except FileExistsError:
        raise OutputExists(path=str(target.final)) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links on this file system: check, then rename (a tiny race window).
        if target.final.exists():
            raise OutputExists(path=str(target.final)) from None
        os.replace(target.part, target.final)
        return
    target.part.unlink()


class _ProgressLog:
    """Logs a progress line every few seconds: job logs are files, not terminals."""

    def __init__(self, file_id: str, size: int) -> None:
        self.file_id, self.size = file_id, size
        self.done = 0
        self.started = self.last = time.monotonic()

    def add(self, count: int) -> None:
        # Called from several threads; a lost update only delays a log line.
        self.done += count
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            rate = self.done / max(now - self.started, 1e-6)
            log.info(
                "%s: %d of %d bytes (%.0f%%), %.1f MB/s",
                self.file_id,
                self.done,
                self.size,
                100 * self.done / max(self.size, 1),
                rate / 1e6,
            )
