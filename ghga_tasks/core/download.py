"""Downloading one file: wait for staging, write ``<name>.part``, verify, rename.

The promise: a file named ``<file_id><ext>.c4gh`` is always complete (envelope plus every
byte of the object). Anything else ends with the ``.part`` deleted and an error raised.
An existing final file is only replaced when overwrite was asked for, and even then
only by the atomic rename of a verified ``.part``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .api import DownloadApi, Staged, Staging, Unavailable, make_session
from .errors import ApiError, IntegrityError, OutputExists, StagingTimeout
from .settings import Settings
from .transfer import SessionPool, UrlSource, download_ranges
from .work_package import FileSpec, WorkPackage

log = logging.getLogger(__name__)

HASH_READ_SIZE = 4 * 1024 * 1024
PROGRESS_INTERVAL = 10.0  # seconds between progress lines in the job log


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
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Staged, float]:
    """Probe until the file is staged, honouring Retry-After; return it and the wait."""
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
                pause = min(max(retry_after, 0.5), deadline - now)
                log.info("%s is being staged, probing again in %.0f s", file_id, pause)
                sleep(pause)


def download_file(
    spec: FileSpec, work_package: WorkPackage, settings: Settings, api: DownloadApi
) -> DownloadResult:
    """Download one file of the work package into ``settings.output_dir``."""
    started_at = time.time()
    target = Target.for_file(spec, settings.output_dir)
    if target.final.exists() and not settings.overwrite:
        raise OutputExists(path=str(target.final))
    staged, waited = wait_until_staged(api, spec.file_id, max_wait_time=settings.max_wait_time)
    if waited:
        log.info("%s: waited %.0f s for staging", spec.file_id, waited)
    envelope = api.fetch_envelope(spec.file_id, ghga_public_key=work_package.ghga_public_key)
    urls = UrlSource(staged.url, renew=lambda: _fresh_url(api, spec.file_id))
    started = time.monotonic()
    download_to_part(target, envelope, staged.size, urls, settings, file_id=spec.file_id)
    sha256 = finalize_part(target, expected_size=len(envelope) + staged.size, file_id=spec.file_id)
    seconds = time.monotonic() - started
    size = len(envelope) + staged.size
    log.info(
        "%s: downloaded %d bytes in %.1f s (%.1f MB/s) to %s",
        spec.file_id,
        size,
        seconds,
        size / max(seconds, 1e-6) / 1e6,
        target.final,
    )
    return DownloadResult(
        spec.file_id,
        spec.file_name,
        size,
        sha256,
        seconds,
        waited,
        staged.sha256,
        started_at,
        time.time(),
    )


def _fresh_url(api: DownloadApi, file_id: str) -> str:
    result = api.probe_object(file_id)
    if not isinstance(result, Staged):
        raise ApiError(url=api.base_url, file_id=file_id, problem="file is no longer staged")
    return result.url


def download_to_part(
    target: Target,
    envelope: bytes,
    size: int,
    urls: UrlSource,
    settings: Settings,
    *,
    file_id: str,
) -> None:
    """Write envelope + object to ``target.part`` (replacing a stale one); on any failure,
    including Ctrl-C, the ``.part`` is deleted before the error goes on."""
    target.part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sessions = SessionPool(lambda: make_session(retries=settings.range_retries))
    progress = _ProgressLog(file_id, size)
    try:
        os.pwrite(fd, envelope, 0)
        download_ranges(
            file_id=file_id,
            fd=fd,
            offset=len(envelope),
            size=size,
            urls=urls,
            sessions=sessions,
            connections=settings.connections,
            part_size=settings.part_size,
            timeout=(settings.connect_timeout, settings.read_timeout),
            retries=settings.range_retries,
            on_bytes=progress.add,
        )
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        target.part.unlink(missing_ok=True)
        raise
    finally:
        sessions.close()
    os.close(fd)


def finalize_part(target: Target, *, expected_size: int, file_id: str) -> str:
    """Check the ``.part`` is exactly the expected size, hash it, rename it into place."""
    try:
        actual = target.part.stat().st_size
        if actual != expected_size:
            raise IntegrityError(
                file_id=file_id, problem=f"{actual} bytes written, {expected_size} expected"
            )
        sha256 = file_sha256(target.part)
        os.replace(target.part, target.final)
    except BaseException:
        target.part.unlink(missing_ok=True)
        raise
    return sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(HASH_READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


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
