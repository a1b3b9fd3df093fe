"""A slow object store, for tests that must act while a download is in progress (e.g.
cancel a cluster job mid-file): chosen files' object-store bodies trickle at a fixed rate.

Design notes:

- It wraps the router instead of adding a fault kind: :class:`SandboxApp` looks up
  ``app.router`` on every request, so :func:`slow_downloads` works on a running
  sandbox and leaves the fault machinery (``faults.py``) untouched.
- Only successful object-store bodies (200/206 under the outbox path) are slowed; the
  Download API answers at full speed, so planning and staging stay fast.
- The slowed body is a generator that closes the original body when it ends or when
  the client goes away, so streamed files are never left open.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager

from ghga_tasks.sandbox.app import Handler, Request, Response, Router, SandboxApp
from ghga_tasks.sandbox.presign import OUTBOX_PATH

CHUNK = 16 * 1024  # bytes sent between two pauses


class SlowObjectStoreRouter(Router):
    """Routes through ``inner``, then slows the chosen files' object-store bodies."""

    def __init__(
        self, inner: Router, *, bytes_per_second: int, file_ids: Collection[str] | None
    ) -> None:
        if bytes_per_second < 1:
            raise ValueError("bytes_per_second must be at least 1")
        super().__init__()
        self.inner = inner
        self.bytes_per_second = bytes_per_second
        self.file_ids = None if file_ids is None else frozenset(file_ids)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.inner.add(method, pattern, handler)

    def dispatch(self, request: Request) -> Response:
        response = self.inner.dispatch(request)
        if self._applies(request, response):
            response.body = trickle(response.body, self.bytes_per_second)
        return response

    def _applies(self, request: Request, response: Response) -> bool:
        if not request.path.startswith(f"{OUTBOX_PATH}/") or response.status not in (200, 206):
            return False
        return self.file_ids is None or response.file_id in self.file_ids


def trickle(body: Iterable[bytes], bytes_per_second: int) -> Iterator[bytes]:
    """``body`` re-cut into :data:`CHUNK`-sized pieces, pausing so the rate holds."""
    try:
        for block in body:
            for start in range(0, len(block), CHUNK):
                piece = block[start : start + CHUNK]
                time.sleep(len(piece) / bytes_per_second)
                yield piece
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


@contextmanager
def slow_downloads(
    app: SandboxApp, *, bytes_per_second: int, file_ids: Collection[str] | None = None
) -> Iterator[SlowObjectStoreRouter]:
    """Object-store bodies of ``file_ids`` (all files if None) arrive at this rate while
    the block runs; afterwards new requests are served at full speed again."""
    original = app.router
    app.router = SlowObjectStoreRouter(
        original, bytes_per_second=bytes_per_second, file_ids=file_ids
    )
    try:
        yield app.router
    finally:
        app.router = original
