"""Ranged, multi-connection download of one object into an open file.

Design notes:
- The object is split into equal ranges, a multiple of the connection count, so the last
  wave of requests is as full as the first (fixed-size parts leave a half-empty wave).
- Every range is written straight to its offset with ``os.pwrite``: memory stays at one
  read buffer per connection, whatever the file size. A short ``pwrite`` is completed, not
  ignored: a hole left in the file would pass the size check as zeros.
- Two retry layers: urllib3 retries a request that fails before its body (connect errors,
  5xx, 429 with ``Retry-After``); a range that breaks mid-body, stalls longer than the read
  timeout or arrives short is resumed from its last written byte. Each range has its own
  budget of ``range_retries`` failures; when it is spent the file fails.
- A 403 from the object store means the presigned URL expired: the URL is renewed once
  for all connections (``UrlSource``) and the range goes on.
- Nothing the server says is taken on trust: a 206 must start where we asked and name the
  object's size; a 200 (``Range`` ignored) must carry the whole object, and we skip to
  our start; a body shorter than asked is never accepted.
- Ranges finish out of order, but :class:`Prefix` knows how much of the object is on disk
  from byte 0 on. A *follower* task (hashing, decrypt-verify) reads that prefix back in
  order while the download goes on, so checking costs no second pass over the file.
- Stopping is prompt: on failure or a signal every range stops at its next chunk, and
  connections blocked in a read are shut down instead of waiting for the read timeout.
- Resuming a ``.part`` (``resume_partial``): :class:`Checkpoints` names the ranges already on
  disk for good; they count as written from the start (the follower reads them back from
  disk like any other), only the gaps between them are fetched, and every written chunk is
  reported so the checkpoints can make it durable in batches (``resume``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

import requests

from . import shutdown
from .errors import TransferError

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024
STOP_POLL_SECONDS = 0.1  # how soon a download in a thread notices a stop request
# Smallest range worth its own request and thread (unless part_size is smaller). Where
# each connection is capped, a 256 KiB file over four connections arrives in a quarter of
# the time (benchmark S7); below 64 KiB the threads cost more than they save (S4).
MIN_RANGE = 64 * 1024
MAX_RANGES = 100_000  # 16 MiB parts up to 1.6 TB; larger objects get larger parts
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


def split_ranges(
    size: int, *, connections: int, part_size: int, max_ranges: int = MAX_RANGES
) -> list[ByteRange]:
    """Equal ranges no larger than ``part_size``, their count a multiple of ``connections``.

    A small object gets fewer ranges than connections rather than ranges under
    ``min(part_size, MIN_RANGE)``: below that a request costs more than it gains, and a
    single range needs no connection threads at all. At most about ``max_ranges`` of
    them: for a huge object (or a tiny ``part_size``) the parts grow instead, so the list
    never costs more than a few MB.
    """
    if size <= 0:
        return []
    count = min(max(connections, -(-size // part_size)), max(max_ranges, connections))
    count = min(-(-count // connections) * connections, size)
    count = min(count, max(1, size // min(part_size, MIN_RANGE)))
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


class Stopped(Exception):
    """The download was stopped (a range failed, or the process is shutting down)."""


class Prefix:
    """How many bytes of the object, counted from byte 0, are already on disk.

    Each range is written front to back (a resumed range continues at its last byte), so
    the on-disk prefix is: all complete leading ranges plus the written head of the first
    incomplete one. Followers wait on it to read the file in order.
    """

    def __init__(
        self, ranges: list[ByteRange], stop: threading.Event, done: list[bool] | None = None
    ) -> None:
        self._ranges = ranges
        # Ranges marked done were on disk before this download started (a resumed .part).
        self._done = [len(r) if done and done[i] else 0 for i, r in enumerate(ranges)]
        self._first_open = 0  # index of the first incomplete range
        self._touched: set[int] = set()  # ranges written to since the last take_written()
        self._stop = stop
        self._changed = threading.Condition()
        self.size = ranges[-1].stop if ranges else 0
        self._advance()

    @property
    def value(self) -> int:
        with self._changed:
            return self._value()

    def _value(self) -> int:
        if self._first_open == len(self._ranges):
            return self.size
        return self._ranges[self._first_open].start + self._done[self._first_open]

    def add(self, index: int, count: int) -> None:
        """Range ``index`` has ``count`` more bytes on disk (written in order)."""
        with self._changed:
            self._done[index] += count
            self._touched.add(index)
            if index != self._first_open:
                return
            self._advance()
            self._changed.notify_all()

    def _advance(self) -> None:
        while self._first_open < len(self._ranges) and self._done[self._first_open] == len(
            self._ranges[self._first_open]
        ):
            self._first_open += 1

    def take_written(self) -> list[ByteRange]:
        """The written head of every range written to since the last call (a range's
        head covers all its bytes on disk): what is new, without a walk over every range
        of a huge object."""
        with self._changed:
            touched, self._touched = self._touched, set()
            return [
                ByteRange(self._ranges[i].start, self._ranges[i].start + self._done[i])
                for i in sorted(touched)
            ]

    def wake(self) -> None:
        """Wake waiting followers (after ``stop`` was set)."""
        with self._changed:
            self._changed.notify_all()

    def wait_beyond(self, position: int) -> int:
        """Block until more than ``position`` bytes are on disk (or all are); return the
        prefix. Raises :class:`Stopped` once the download is stopped."""
        with self._changed:
            while True:
                if self._stop.is_set():
                    raise Stopped()
                current = self._value()
                if current > position or current == self.size:
                    return current
                self._changed.wait(timeout=1.0)


class LiveResponses:
    """The responses being read right now, so a stop can cut their sockets.

    A thread blocked in ``recv`` on a stalled server would otherwise hold up the exit
    (Ctrl-C, SIGTERM, another range's failure) for a whole read timeout.
    """

    def __init__(self) -> None:
        self._responses: set[requests.Response] = set()
        self._lock = threading.Lock()
        self._aborted = False

    @contextlib.contextmanager
    def track(self, response: requests.Response) -> Iterator[None]:
        with self._lock:
            self._responses.add(response)
            aborted = self._aborted
        if aborted:
            _shutdown(response)
        try:
            yield
        finally:
            with self._lock:
                self._responses.discard(response)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            responses = list(self._responses)
        for response in responses:
            _shutdown(response)


def _shutdown(response: requests.Response) -> None:
    with contextlib.suppress(AttributeError, ValueError, RuntimeError, OSError):
        response.raw.shutdown()


class _UrlExpired(Exception):
    def __str__(self) -> str:
        return "the presigned URL kept expiring"


class _RangeBroken(Exception):
    pass


class _ShortBody(_RangeBroken):
    def __init__(self, got: int, wanted: int) -> None:
        super().__init__(f"body ended after {got} of {wanted} bytes")


@dataclass(frozen=True)
class TransferPlan:
    """How to fetch: the settings of :func:`download_ranges`."""

    connections: int
    part_size: int
    timeout: tuple[float, float]  # connect, read (the read timeout is the stall limit)
    retries: int  # failures one range may have before the file fails


class Checkpoints(Protocol):
    """Makes written bytes durable and records them, for a later run to resume from
    (``resume.DurableRanges``)."""

    @property
    def recorded(self) -> list[ByteRange]:
        """Ranges of the object already on disk for good, sorted: not fetched again."""
        ...

    def attach(self, prefix: Prefix) -> None:
        """The download's :class:`Prefix`, which knows every byte written so far."""

    def written(self, count: int) -> None:
        """``count`` more bytes were written (from any connection's thread)."""


@dataclass(frozen=True)
class Transfer:
    """What every connection of one file's download shares."""

    file_id: str
    fd: int
    offset: int  # where byte 0 of the object goes in the file (after the envelope)
    object_size: int
    urls: UrlSource
    plan: TransferPlan
    stop: threading.Event
    prefix: Prefix
    live: LiveResponses
    on_bytes: Callable[[int], None]
    checkpoints: Checkpoints | None = None


@dataclass
class RangeJob:
    """One range of the object and how much of it is on disk."""

    transfer: Transfer
    index: int  # position in the object's range list
    byte_range: ByteRange
    session: requests.Session
    done: int = 0  # bytes of the range written so far, front to back


def fetch_range(job: RangeJob) -> None:
    """Fetch one range, resuming after breaks, until it is complete or the budget is spent."""
    transfer, failures = job.transfer, 0
    while job.done < len(job.byte_range) and not transfer.stop.is_set():
        url = transfer.urls.url
        try:
            _stream_into_file(job, url)
            continue
        except _UrlExpired as expired:
            cause: Exception = expired
            transfer.urls.renew(url)
        except (requests.RequestException, _RangeBroken) as error:
            cause = error
            if not transfer.stop.is_set():
                log.info(
                    "%s: range %s broke after %d bytes (%s), resuming",
                    transfer.file_id,
                    job.byte_range.header,
                    job.done,
                    describe(error),
                )
        failures += 1
        if transfer.stop.is_set():
            return
        if failures > transfer.plan.retries:
            raise TransferError(
                file_id=transfer.file_id,
                problem=f"range {job.byte_range.header} failed {failures} times, "
                f"last: {describe(cause)}",
            ) from cause
        transfer.stop.wait(min(0.2 * 2**failures, 5.0))  # back off, but wake at once on stop


def _stream_into_file(job: RangeJob, url: str) -> None:
    """One GET for the rest of the range; every byte written counts in ``job.done`` at
    once, so a break resumes right after it. Returns when the range is complete."""
    transfer = job.transfer
    todo = ByteRange(job.byte_range.start + job.done, job.byte_range.stop)
    headers = {"Range": todo.header, "Cache-Control": "no-store", "Accept-Encoding": "identity"}
    timeout = transfer.plan.timeout
    with job.session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        skip = _bytes_to_skip(response, todo, transfer.object_size)
        with transfer.live.track(response):
            for chunk in response.iter_content(READ_SIZE):
                if transfer.stop.is_set():
                    return
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                _write_chunk(job, chunk[: len(job.byte_range) - job.done])
                if job.done == len(job.byte_range):
                    return
    if not transfer.stop.is_set():
        raise _ShortBody(job.done - (todo.start - job.byte_range.start), len(todo))


def _write_chunk(job: RangeJob, chunk: bytes) -> None:
    if not chunk:
        return
    transfer = job.transfer
    pwrite_all(transfer.fd, chunk, transfer.offset + job.byte_range.start + job.done)
    job.done += len(chunk)
    transfer.prefix.add(job.index, len(chunk))
    transfer.on_bytes(len(chunk))
    if transfer.checkpoints is not None:
        transfer.checkpoints.written(len(chunk))


def describe(error: Exception) -> str:
    """A short reason for a failed range, without urllib3's nested reprs."""
    if isinstance(error, (_RangeBroken, _UrlExpired)):
        return str(error)
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection broke in the middle of the body"
    if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
        return "stalled: no data within the read timeout"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS failed: the certificate is not trusted or the connection broke"
    if isinstance(error, requests.ConnectionError):
        return "could not connect, or the connection was reset"
    return type(error).__name__


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written (a regular file may take fewer)."""
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        if count <= 0:
            raise OSError(f"pwrite wrote {count} bytes at offset {offset}")
        view, offset = view[count:], offset + count


def _bytes_to_skip(response: requests.Response, todo: ByteRange, object_size: int) -> int:
    """Check the status and the range headers; how much of the body precedes our range."""
    if response.status_code == 403:
        raise _UrlExpired()
    if response.status_code == 200:
        # The server ignored Range and sends the whole object: skip to our start. The
        # body must be the object, not an error page that happens to say 200.
        length = response.headers.get("Content-Length")
        if length is not None and length != str(object_size):
            raise _RangeBroken(f"HTTP 200 with {length} bytes, the object has {object_size}")
        return todo.start
    if response.status_code != 206:
        raise _RangeBroken(f"HTTP {response.status_code}")
    content_range = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.fullmatch(content_range)
    if not match or int(match.group(1)) != todo.start or int(match.group(2)) < todo.start:
        raise _RangeBroken(f"Content-Range {content_range[:80]!r} for {todo.header}")
    if match.group(3) not in ("*", str(object_size)):
        raise _RangeBroken(
            f"the object store has {match.group(3)} bytes, the Download API said {object_size}"
        )
    return 0


class SessionPool:
    """One ``requests.Session`` per worker thread: sessions are not thread-safe.

    With ``idle``, sessions come from there and go back when the file is done
    (``close(keep=True)``): the next file of this process reuses their kept-alive
    connections instead of opening new ones (one round trip each, more with TLS).
    """

    def __init__(
        self, factory: Callable[[], requests.Session], idle: IdleSessions | None = None
    ) -> None:
        self._factory, self._idle = factory, idle
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = (self._idle and self._idle.take()) or self._factory()
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self, *, keep: bool = False) -> None:
        """Close every session, or with ``keep`` (a file that completed: no response is
        left half-read) hand them back to ``idle``."""
        with self._lock:
            sessions, self._all = self._all, []
        for session in sessions:
            if not (keep and self._idle and self._idle.put(session)):
                session.close()


class IdleSessions:
    """Sessions between files, at most ``limit`` (the rest are closed)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def take(self) -> requests.Session | None:
        with self._lock:
            return self._sessions.pop() if self._sessions else None

    def put(self, session: requests.Session) -> bool:
        """Keep ``session`` for the next file; False when there is no room."""
        with self._lock:
            if len(self._sessions) >= self._limit:
                return False
            self._sessions.append(session)
            return True


def ranges_around(
    size: int, recorded: list[ByteRange], *, connections: int, part_size: int
) -> tuple[list[ByteRange], list[bool]]:
    """The object as sorted, adjoining ranges, and which of them are ``recorded`` (done).

    Without recorded ranges these are :func:`split_ranges`'. Otherwise each gap between
    recorded ranges is cut into pieces of up to ``part_size``: the connections share the
    pieces of all gaps, front to back.
    """
    if not recorded:
        ranges = split_ranges(size, connections=connections, part_size=part_size)
        return ranges, [False] * len(ranges)
    ranges, done, position = [], [], 0
    for kept in [*recorded, ByteRange(size, size)]:
        for piece in split_ranges(kept.start - position, connections=1, part_size=part_size):
            ranges.append(ByteRange(position + piece.start, position + piece.stop))
            done.append(False)
        if len(kept):
            ranges.append(kept)
            done.append(True)
        position = kept.stop
    return ranges, done


Follower = Callable[[Prefix], None]


def download_ranges(
    *,
    file_id: str,
    fd: int,
    offset: int,
    size: int,
    urls: UrlSource,
    sessions: SessionPool,
    plan: TransferPlan,
    on_bytes: Callable[[int], None] = lambda _n: None,
    follower: Follower | None = None,
    on_failure: Callable[[], None] = lambda: None,
    checkpoints: Checkpoints | None = None,
) -> None:
    """Fill ``fd[offset:offset+size]`` with the object, over ``plan.connections`` connections.

    ``follower`` runs alongside and may read the file up to the :class:`Prefix` it gets;
    its exception fails the download like a range's. ``on_failure`` runs as soon as the
    download is known to fail, *before* waiting for the connections to wind down, so a
    caller can remove its partial file even if the process is killed while waiting.
    ``checkpoints``: ranges already on disk are not fetched; written bytes are reported.
    """
    stop, live = threading.Event(), LiveResponses()
    recorded = checkpoints.recorded if checkpoints is not None else []
    ranges, done = ranges_around(
        size, recorded, connections=plan.connections, part_size=plan.part_size
    )
    prefix = Prefix(ranges, stop, done)
    if checkpoints is not None:
        checkpoints.attach(prefix)
    transfer = Transfer(
        file_id, fd, offset, size, urls, plan, stop, prefix, live, on_bytes, checkpoints
    )
    todo = [(index, r) for index, r in enumerate(ranges) if not done[index]]

    def run(index: int, byte_range: ByteRange) -> None:
        fetch_range(RangeJob(transfer, index, byte_range, sessions.get()))

    if len(todo) <= 1:
        # A small object (or one range left): starting threads would cost more than the
        # transfer (benchmark S4). The range, then the follower over the complete file,
        # in this thread.
        try:
            for index, byte_range in todo:
                run(index, byte_range)
            if follower is not None:
                follower(prefix)
        except BaseException:
            on_failure()
            raise
        return
    workers = min(plan.connections, len(todo)) + (1 if follower else 0)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="range") as pool:
        futures = [pool.submit(run, index, r) for index, r in todo]
        if follower is not None:
            futures.append(pool.submit(follower, prefix))
        try:
            _raise_first_failure(futures)
        except BaseException:
            on_failure()
            raise
        finally:
            # On failure or Ctrl-C: running ranges stop at their next chunk (blocked reads
            # are cut), queued ones never start, and the pool waits for them before the
            # caller closes ``fd``.
            stop.set()
            prefix.wake()
            live.abort()
            for future in futures:
                future.cancel()


def _raise_first_failure(futures: list[Future[None]]) -> None:
    """Wait for every range; raise the first failure, or ``KeyboardInterrupt`` as soon as
    a stop is requested (this may be a worker thread, which no signal reaches)."""
    pending = set(futures)
    while pending:
        shutdown.check()
        with shutdown.polling():
            done, pending = wait(pending, timeout=STOP_POLL_SECONDS, return_when=FIRST_EXCEPTION)
        for future in done:
            error = future.exception()
            if error is not None:
                raise error
