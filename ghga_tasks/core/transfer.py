"""Ranged, multi-connection download of one object into an open file.

Design notes:
- The object is split into equal ranges, a multiple of the connection count, so the last
  wave of requests is as full as the first (fixed-size parts leave a half-empty wave).
- Every range is written straight to its offset with ``os.pwrite``: memory stays at one
  read buffer per connection, whatever the file size.
- Two retry layers: urllib3 retries a request that fails before its body (connect errors,
  5xx); a range that breaks mid-body is resumed from its last written byte, up to
  ``range_retries`` times.
- A 403 from the object store means the presigned URL expired: the URL is renewed once
  for all connections (``UrlSource``) and the range goes on.
- A server that ignores ``Range`` (200 with the whole body) is handled by skipping to the
  range start; a body shorter than asked is never accepted.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import requests

from .errors import TransferError

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class ByteRange:
    start: int
    stop: int  # exclusive

    @property
    def header(self) -> str:
        return f"bytes={self.start}-{self.stop - 1}"

    def __len__(self) -> int:
        return self.stop - self.start


def split_ranges(size: int, *, connections: int, part_size: int) -> list[ByteRange]:
    """Equal ranges no larger than ``part_size``, their count a multiple of ``connections``."""
    if size <= 0:
        return []
    count = max(connections, -(-size // part_size))
    count = min(-(-count // connections) * connections, size)
    base, extra = divmod(size, count)
    ranges, start = [], 0
    for index in range(count):
        stop = start + base + (1 if index < extra else 0)
        ranges.append(ByteRange(start, stop))
        start = stop
    return ranges


class UrlSource:
    """The current presigned URL, renewed once however many connections saw it expire."""

    def __init__(self, url: str, renew: Callable[[], str]) -> None:
        self._url = url
        self._renew = renew
        self._lock = threading.Lock()
        self.renewals = 0

    @property
    def url(self) -> str:
        return self._url

    def renew(self, expired_url: str) -> str:
        with self._lock:
            if self._url == expired_url:
                log.info("presigned URL expired, asking the Download API for a new one")
                self._url = self._renew()
                self.renewals += 1
            return self._url


class _UrlExpired(Exception):
    pass


class _RangeBroken(Exception):
    pass


@dataclass
class RangeJob:
    """Everything one connection needs to fetch one range into the file."""

    file_id: str
    fd: int
    offset: int  # where byte 0 of the object goes in the file (after the envelope)
    byte_range: ByteRange
    urls: UrlSource
    session: requests.Session
    timeout: tuple[float, float]
    retries: int
    stop: threading.Event
    on_bytes: Callable[[int], None]


def fetch_range(job: RangeJob) -> None:
    """Fetch one range, resuming after breaks, until it is complete or the budget is spent."""
    done, failures = 0, 0
    while done < len(job.byte_range):
        url = job.urls.url
        todo = ByteRange(job.byte_range.start + done, job.byte_range.stop)
        try:
            done += _stream_into_file(job, url, todo)
        except _UrlExpired:
            job.urls.renew(url)
            failures += 1
        except (requests.RequestException, _RangeBroken) as error:
            failures += 1
            log.info("%s: range %s broke (%s), resuming", job.file_id, todo.header, error)
            if failures > job.retries:
                raise TransferError(
                    file_id=job.file_id, problem=f"range {todo.header} failed: {error}"
                ) from error
            time.sleep(min(0.2 * 2**failures, 5.0))
        if job.stop.is_set():
            return
        if failures > job.retries:
            raise TransferError(file_id=job.file_id, problem="presigned URL kept expiring")


def _stream_into_file(job: RangeJob, url: str, todo: ByteRange) -> int:
    """One GET for ``todo``; returns how many bytes were written (all, or raises)."""
    written = 0
    headers = {"Range": todo.header, "Cache-Control": "no-store", "Accept-Encoding": "identity"}
    with job.session.get(url, headers=headers, stream=True, timeout=job.timeout) as response:
        skip = _bytes_to_skip(response, todo)
        for chunk in response.iter_content(READ_SIZE):
            if job.stop.is_set():
                return written
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            chunk = chunk[: len(todo) - written]
            if chunk:
                os.pwrite(job.fd, chunk, job.offset + todo.start + written)
                written += len(chunk)
                job.on_bytes(len(chunk))
            if written == len(todo):
                return written
    raise _ShortBody(written, len(todo))


def _bytes_to_skip(response: requests.Response, todo: ByteRange) -> int:
    """Check the status and Content-Range; how much of the body precedes our range."""
    if response.status_code == 403:
        raise _UrlExpired()
    if response.status_code == 200:
        # The server ignored Range and sends the whole object: skip to our start.
        return todo.start
    if response.status_code != 206:
        raise _RangeBroken(f"HTTP {response.status_code}")
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != todo.start:
        raise _RangeBroken(f"Content-Range {response.headers.get('Content-Range')!r}")
    return 0


class _ShortBody(_RangeBroken):
    def __init__(self, got: int, wanted: int) -> None:
        super().__init__(f"body ended after {got} of {wanted} bytes")


class SessionPool:
    """One ``requests.Session`` per worker thread: sessions are not thread-safe."""

    def __init__(self, factory: Callable[[], requests.Session]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._factory()
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._all:
                session.close()


def download_ranges(
    *,
    file_id: str,
    fd: int,
    offset: int,
    size: int,
    urls: UrlSource,
    sessions: SessionPool,
    connections: int,
    part_size: int,
    timeout: tuple[float, float],
    retries: int,
    on_bytes: Callable[[int], None] = lambda _n: None,
) -> None:
    """Fill ``fd[offset:offset+size]`` with the object, over ``connections`` connections."""
    stop = threading.Event()

    def run(byte_range: ByteRange) -> None:
        fetch_range(
            RangeJob(
                file_id,
                fd,
                offset,
                byte_range,
                urls,
                sessions.get(),
                timeout,
                retries,
                stop,
                on_bytes,
            )
        )

    ranges = split_ranges(size, connections=connections, part_size=part_size)
    with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="range") as pool:
        futures = [pool.submit(run, r) for r in ranges]
        try:
            _raise_first_failure(futures)
        finally:
            # On failure or Ctrl-C: running ranges stop at their next chunk, queued ones
            # never start, and the pool waits for them before the caller closes ``fd``.
            stop.set()
            for future in futures:
                future.cancel()


def _raise_first_failure(futures: list[Future[None]]) -> None:
    done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in done:
        error = future.exception()
        if error is not None:
            raise error
