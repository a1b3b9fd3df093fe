"""Metadata pipelining: the next files' DRS objects and envelopes, fetched while the
current file downloads.

Bytes still flow for one file at a time (the project's rule). What moves off the critical
path are the round trips before a file's first byte: its work order token, ``GET
/objects/{id}`` (the presigned URL) and ``GET /objects/{id}/envelopes``. On a WAN those are
~4 round trips per file, and a batch of small files is little else; fetched a few files
ahead, in a few threads, they overlap the downloads before them.

An answer fetched ahead is used once and only while fresh (a presigned URL lives ~30 s in
GHGA); a staging file, an error or an old answer is asked again, live, so a download
behaves exactly as it would without this. The threads are daemons: a stop request or the
end of the process never waits for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import ProbeResult

Answer = tuple["ProbeResult", bytes | None]  # the probe, and the envelope if staged
log = logging.getLogger(__name__)

FRESH_FOR = 20.0  # seconds an answer fetched ahead stays usable
WORKERS = 4  # files fetched at the same time


@dataclass
class _Fetched:
    at: float
    answer: Future[Answer] = field(default_factory=Future)
    probe_taken: bool = False


class Ahead:
    """Answers for files fetched ahead by ``fetch(file_id) -> (probe, envelope or None)``.

    ``usable(probe)`` says whether a probe answer may be handed out (a staged file; a
    staging one must be asked again when its turn comes)."""

    def __init__(
        self,
        fetch: Callable[[str], Answer],
        usable: Callable[[ProbeResult], bool],
        *,
        workers: int = WORKERS,
        fresh_for: float = FRESH_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self._usable = fetch, usable
        self._fresh_for, self._clock = fresh_for, clock
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._fetched: dict[str, _Fetched] = {}

    def request(self, file_ids: Iterable[str]) -> None:
        """Start fetching these files (those not fetched or being fetched already)."""
        now = self._clock()
        with self._lock:
            for file_id in [f for f, e in self._fetched.items() if not self._fresh(e, now)]:
                del self._fetched[file_id]
            new = [f for f in file_ids if f not in self._fetched]
            for file_id in new:
                self._fetched[file_id] = _Fetched(now)
        for file_id in new:
            threading.Thread(
                target=self._run, args=(file_id,), name="ghga-tasks-ahead", daemon=True
            ).start()

    def probe(self, file_id: str) -> ProbeResult | None:
        """The file's probe answer, once, if fetched ahead, fresh and usable."""
        entry = self._entry(file_id)
        if entry is None or entry.probe_taken:
            return None
        answer = _wait(entry.answer)
        if answer is None or not self._usable(answer[0]):
            self._drop(file_id)
            return None
        entry.probe_taken = True
        return answer[0]

    def envelope(self, file_id: str) -> bytes | None:
        """The file's envelope, if fetched ahead and fresh; the entry is used up."""
        entry = self._entry(file_id)
        self._drop(file_id)
        answer = _wait(entry.answer) if entry is not None else None
        return answer[1] if answer is not None else None

    def _run(self, file_id: str) -> None:
        with self._slots:
            entry = self._fetched.get(file_id)
            if entry is None:
                return
            try:
                entry.answer.set_result(self._fetch(file_id))
            except Exception as error:  # the live request will meet it again, and say so
                log.debug("%s: fetching ahead failed (%s); asking again when due", file_id, error)
                entry.answer.set_exception(error)

    def _entry(self, file_id: str) -> _Fetched | None:
        with self._lock:
            entry = self._fetched.get(file_id)
        return entry if entry is not None and self._fresh(entry, self._clock()) else None

    def _drop(self, file_id: str) -> None:
        with self._lock:
            self._fetched.pop(file_id, None)

    def _fresh(self, entry: _Fetched, now: float) -> bool:
        return now - entry.at < self._fresh_for


def _wait(answer: Future[Answer]) -> Answer | None:
    try:
        return answer.result()
    except Exception:
        return None
