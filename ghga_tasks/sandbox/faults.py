"""Per-file fault injection for the sandbox's object store.

A :class:`Faults` object is mutable on purpose: a test sets it, runs the client, and may
change it mid-run (``faults.update(fail_status=None)``) while server threads read it. All
reads that decide whether a fault applies go through ``take_*`` methods, which check,
consume the budget and count under one lock, so two parallel range requests never both
take the last failure.

Counters (``faults.counts``) say how many requests a fault actually changed, so a test
can tell "the client retried after the injected 500" from "the fault never fired".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

FAULT_KINDS = ("drop", "short_body", "fail_status", "url_ttl")


class InjectedFault(Exception):
    """Raised inside a response body to break the connection on purpose."""


@dataclass
class Faults:
    """What goes wrong with one file's object-store responses.

    - ``drop_after_bytes``: send that many body bytes, then break the connection
      (only responses longer than that; ``drop_times`` limits how many, None = all).
    - ``short_body``: announce the full ``Content-Length`` but send half of it
      (``short_times`` limits how many, None = all).
    - ``fail_status`` / ``fail_times``: the next ``fail_times`` requests get this status.
    - ``url_ttl``: presigned URLs for this file live this many seconds instead of the
      sandbox default.
    """

    drop_after_bytes: int | None = None
    drop_times: int | None = None
    short_body: bool = False
    short_times: int | None = None
    fail_status: int | None = None
    fail_times: int = 1
    url_ttl: float | None = None
    _counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0), repr=False, compare=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def update(self, **changes: object) -> None:
        """Change settings atomically, e.g. ``update(fail_status=None)``."""
        allowed = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)

    @property
    def counts(self) -> dict[str, int]:
        """How many requests (or issued URLs, for ``url_ttl``) each fault affected."""
        with self._lock:
            return dict(self._counts)

    def take_failure(self) -> int | None:
        """The status to answer instead of the object, consuming one of ``fail_times``."""
        with self._lock:
            if self.fail_status is None or self.fail_times <= 0:
                return None
            self.fail_times -= 1
            self._counts["fail_status"] += 1
            return self.fail_status

    def take_drop(self, body_length: int) -> int | None:
        """Bytes to send before breaking a body of ``body_length`` bytes, or None."""
        with self._lock:
            cut = self.drop_after_bytes
            if cut is None or cut >= body_length or self.drop_times == 0:
                return None
            if self.drop_times is not None:
                self.drop_times -= 1
            self._counts["drop"] += 1
            return max(cut, 0)

    def take_short(self, body_length: int) -> int | None:
        """Bytes to send of a body announced as ``body_length`` bytes, or None."""
        with self._lock:
            if not self.short_body or body_length == 0 or self.short_times == 0:
                return None
            if self.short_times is not None:
                self.short_times -= 1
            self._counts["short_body"] += 1
            return body_length // 2

    def take_url_ttl(self) -> float | None:
        """The lifetime for a presigned URL being issued now, if this fault sets one."""
        with self._lock:
            if self.url_ttl is None:
                return None
            self._counts["url_ttl"] += 1
            return self.url_ttl
