"""Fault injection for the sandbox: per file, or one set shared by every file.

A :class:`Faults` object is mutable on purpose: a test sets it, runs the client, and may
change it mid-run (``faults.update(fail_status=None)``) while server threads read it. All
reads that decide whether a fault applies go through ``take_*`` methods, which check,
consume the budget and count under one lock, so two parallel range requests never both
take the last failure.

Counters (``faults.counts``) say how many requests a fault actually changed, so a test
can tell "the client retried after the injected 500" from "the fault never fired".

Object-store faults shape ``GET /s3/outbox/...``; API faults shape the Download
Controller's ``/objects/{id}`` (and ``/envelopes``). ``parse_fault_spec`` reads the
``ghga-tasks sandbox --fault [FILE_ID:]key=value,...`` form of the same settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from email.utils import formatdate
from typing import Any

FAULT_KINDS = (
    "drop",
    "stall",
    "short_body",
    "fail_status",
    "url_ttl",
    "flip_byte",
    "ignore_range",
    "delay",
    "api_fail_status",
    "staging_stuck",
    "staging_retry_after",
    "missing",
    "envelope_status",
    "malformed_json",
    "drs_size",
)
Budget = int | None  # how many more times a fault fires; None = every time


class InjectedFault(Exception):
    """Raised inside a response body to break the connection on purpose."""


@dataclass
class Faults:
    """What goes wrong with one file's responses (or every file's, if shared).

    Object store:

    - ``drop_after_bytes``: send that many body bytes, then reset the connection
      (only bodies longer than that; ``drop_times`` limits how many, None = all).
    - ``stall_after_bytes`` / ``stall_seconds``: send that many bytes, then nothing for
      ``stall_seconds`` (set it above the client's read timeout), then break
      (``stall_times`` limits how many, None = all).
    - ``short_body``: announce the full ``Content-Length`` but send half of it
      (``short_times`` limits how many, None = all).
    - ``fail_status`` / ``fail_times``: the next ``fail_times`` requests get this status;
      a tuple cycles, e.g. ``(500, 502, 503)``. ``retry_after`` adds a ``Retry-After``
      header to every injected failure (see :func:`retry_after_header`).
    - ``url_ttl``: presigned URLs for this file live this many seconds instead of the
      sandbox default (small: the URL expires in the middle of the file);
      ``url_ttl_times`` limits how many URLs get it (None = all), so a renewed URL lasts.
    - ``flip_byte_at``: the object byte at this offset is sent with one bit flipped
      (``flip_times`` limits how many responses, None = all).
    - ``ignore_range``: answer every ``Range`` request with 200 and the whole object.
    - ``delay_seconds``: wait this long before answering any request for the file
      (object store and Download API alike).

    Download API (``/objects/{id}``):

    - ``api_fail_status`` / ``api_fail_times``: like ``fail_status``, for DRS requests.
    - ``staging_stuck``: always 202 (staging never finishes); ``staging_retry_after``
      replaces the ``Retry-After`` value of every 202 (an HTTP date, garbage, ...).
    - ``missing_after_probes``: answer 404 ``noSuchObject`` once this many DRS requests
      were answered normally (0: always), as if the file vanished mid-batch.
    - ``envelope_status`` / ``envelope_times``: ``/envelopes`` answers this status.
    - ``malformed_json``: the DRS object's body is cut in the middle (not JSON).
    - ``drs_size``: the DRS object announces this size (huge, negative, ...).
    """

    drop_after_bytes: int | None = None
    drop_times: Budget = None
    stall_after_bytes: int | None = None
    stall_seconds: float = 5.0
    stall_times: Budget = None
    short_body: bool = False
    short_times: Budget = None
    fail_status: int | tuple[int, ...] | None = None
    fail_times: int = 1
    retry_after: str | None = None
    url_ttl: float | None = None
    url_ttl_times: Budget = None
    flip_byte_at: int | None = None
    flip_times: Budget = None
    ignore_range: bool = False
    delay_seconds: float = 0.0
    api_fail_status: int | tuple[int, ...] | None = None
    api_fail_times: int = 1
    staging_stuck: bool = False
    staging_retry_after: str | None = None
    missing_after_probes: int | None = None
    envelope_status: int | None = None
    envelope_times: Budget = None
    malformed_json: bool = False
    drs_size: int | None = None
    _counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0), repr=False, compare=False
    )
    _probes: int = field(default=0, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def update(self, **changes: object) -> None:
        """Change settings atomically, e.g. ``update(fail_status=None)``."""
        unknown = set(changes) - set(setting_names())
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

    def _take(self, kind: str, budget_name: str) -> bool:
        """Consume one firing of a fault with a ``Budget`` (caller holds the lock)."""
        budget = getattr(self, budget_name)
        if budget is not None:
            if budget <= 0:
                return False
            setattr(self, budget_name, budget - 1)
        self._counts[kind] += 1
        return True

    # --- object store ------------------------------------------------------------------

    def take_failure(self) -> int | None:
        """The status to answer instead of the object, consuming one of ``fail_times``."""
        with self._lock:
            return self._take_status("fail_status", "fail_times")

    def _take_status(self, kind: str, times_name: str) -> int | None:
        status, times = getattr(self, kind), getattr(self, times_name)
        if status is None or times <= 0:
            return None
        setattr(self, times_name, times - 1)
        self._counts[kind] += 1
        if isinstance(status, tuple):
            return int(status[(self._counts[kind] - 1) % len(status)])
        return int(status)

    def take_drop(self, body_length: int) -> int | None:
        """Bytes to send before breaking a body of ``body_length`` bytes, or None."""
        with self._lock:
            cut = self.drop_after_bytes
            if cut is None or cut >= body_length or not self._take("drop", "drop_times"):
                return None
            return max(cut, 0)

    def take_stall(self, body_length: int) -> int | None:
        """Bytes to send before going silent for ``stall_seconds``, or None."""
        with self._lock:
            cut = self.stall_after_bytes
            if cut is None or cut >= body_length or not self._take("stall", "stall_times"):
                return None
            return max(cut, 0)

    def take_short(self, body_length: int) -> int | None:
        """Bytes to send of a body announced as ``body_length`` bytes, or None."""
        with self._lock:
            if not self.short_body or body_length == 0:
                return None
            if not self._take("short_body", "short_times"):
                return None
            return body_length // 2

    def take_url_ttl(self) -> float | None:
        """The lifetime for a presigned URL being issued now, if this fault sets one."""
        with self._lock:
            if self.url_ttl is None or not self._take("url_ttl", "url_ttl_times"):
                return None
            return self.url_ttl

    def take_flip(self, start: int, length: int) -> int | None:
        """Offset (from ``start``) of the byte to flip in a body covering
        ``[start, start + length)`` of the object, or None."""
        with self._lock:
            at = self.flip_byte_at
            if at is None or not start <= at < start + length:
                return None
            if not self._take("flip_byte", "flip_times"):
                return None
            return at - start

    def take_ignore_range(self) -> bool:
        with self._lock:
            if self.ignore_range:
                self._counts["ignore_range"] += 1
            return self.ignore_range

    def delay(self) -> None:
        """Sleep ``delay_seconds`` (a slow server), counting the delayed requests."""
        with self._lock:
            seconds = self.delay_seconds
            if seconds > 0:
                self._counts["delay"] += 1
        if seconds > 0:
            time.sleep(seconds)

    # --- Download API --------------------------------------------------------------------

    def take_api_failure(self) -> int | None:
        with self._lock:
            return self._take_status("api_fail_status", "api_fail_times")

    def take_probe_override(self) -> str | None:
        """How to answer a DRS object request instead of normally: ``"missing"``,
        ``"staging"``, ``"malformed"``, or None. Counts the request for
        ``missing_after_probes``."""
        with self._lock:
            self._probes += 1
            after = self.missing_after_probes
            if after is not None and self._probes > after:
                self._counts["missing"] += 1
                return "missing"
            if self.staging_stuck:
                self._counts["staging_stuck"] += 1
                return "staging"
            if self.malformed_json:
                self._counts["malformed_json"] += 1
                return "malformed"
            return None

    def take_staging_retry_after(self) -> str | None:
        """The ``Retry-After`` value to send with a 202 instead of the real one, or None."""
        with self._lock:
            if self.staging_retry_after is None:
                return None
            self._counts["staging_retry_after"] += 1
            return retry_after_header(self.staging_retry_after)

    def take_drs_size(self) -> int | None:
        with self._lock:
            if self.drs_size is not None:
                self._counts["drs_size"] += 1
            return self.drs_size

    def take_envelope_failure(self) -> int | None:
        with self._lock:
            if self.envelope_status is None:
                return None
            if not self._take("envelope_status", "envelope_times"):
                return None
            return self.envelope_status


def retry_after_header(value: str) -> str:
    """The ``Retry-After`` value to send for a fault's setting.

    ``"7"`` is sent as is; ``"date+7"`` becomes the HTTP date 7 seconds from now (a fixed
    date would soon lie in the past); anything else is sent verbatim, as garbage.
    """
    if value.startswith("date+"):
        try:
            seconds = float(value[5:])
        except ValueError:
            return value
        return formatdate(time.time() + seconds, usegmt=True)
    return value


def setting_names() -> list[str]:
    """The public settings of :class:`Faults`, in declaration order."""
    return [f.name for f in fields(Faults) if not f.name.startswith("_")]


# --- the command-line form -------------------------------------------------------------------

_STRING_SETTINGS = {"retry_after", "staging_retry_after"}
_BOOL_SETTINGS = {"short_body", "ignore_range", "staging_stuck", "malformed_json"}
_FLOAT_SETTINGS = {"stall_seconds", "url_ttl", "delay_seconds"}
_STATUS_SETTINGS = {"fail_status", "api_fail_status"}


def parse_fault_spec(text: str) -> tuple[str | None, Faults]:
    """``[FILE_ID:]key=value,key=value`` → (file ID or None for every file, Faults).

    Values: integers; ``none``; ``true``/``false``; statuses may cycle with ``/``
    (``fail_status=500/502/503``); ``retry_after`` takes what :func:`retry_after_header`
    does. Example: ``GHGAF1:drop_after_bytes=100000,drop_times=2``.
    """
    head, colon, rest = text.partition(":")
    target, assignments = (head, rest) if colon and "=" not in head else ("", text)
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in assignments.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in setting_names():
            known = ", ".join(setting_names())
            raise ValueError(f"unknown fault setting {name!r} (known: {known})")
        settings[name] = _fault_value(name, value.strip())
    if not settings:
        raise ValueError(f"no fault settings in {text!r}")
    return (target.strip() or None), Faults(**settings)


def _fault_value(name: str, value: str) -> Any:
    if value.lower() == "none":
        return None
    try:
        if name in _STRING_SETTINGS:
            return value
        if name in _BOOL_SETTINGS:
            return {"true": True, "false": False}[value.lower()]
        if name in _FLOAT_SETTINGS:
            return float(value)
        if name in _STATUS_SETTINGS and "/" in value:
            return tuple(int(v) for v in value.split("/"))
        return int(value)
    except (KeyError, ValueError):
        raise ValueError(f"fault setting {name}: cannot read {value!r}") from None
