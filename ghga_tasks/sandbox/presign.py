"""Presigned, expiring object-store URLs, S3 style but simpler.

A URL is ``<base>/s3/outbox/<object uuid>?expires=<epoch>&signature=<hex>`` where the
signature is HMAC-SHA256, keyed with a per-sandbox secret, over the method, the path and
the ``expires`` value. Like a SigV4 URL it signs neither host nor headers, so clients
may add ``X-Request-Id`` or ``Cache-Control`` freely (docs/protocol.md, "Objects and sizes").

``expires`` carries milliseconds (``1732540030.250``) so tests can use sub-second
lifetimes without waiting whole seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping

OUTBOX_PATH = "/s3/outbox"


class Presigner:
    """Issues and checks presigned GET URLs; the secret never leaves this object."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.time):
        self._secret = secret or os.urandom(32)
        self._clock = clock

    def url(self, base_url: str, path: str, ttl: float) -> str:
        """A URL for ``path`` that stops working ``ttl`` seconds from now."""
        expires = f"{self._clock() + ttl:.3f}"
        return f"{base_url}{path}?expires={expires}&signature={self._sign(path, expires)}"

    def problem(self, path: str, query: Mapping[str, str]) -> str | None:
        """Why the signed query does not grant access to ``path`` (None: it does)."""
        expires, signature = query.get("expires"), query.get("signature")
        if not expires or not signature:
            return "Query-string authentication requires expires and signature."
        if not hmac.compare_digest(self._sign(path, expires), signature):
            return "The request signature we calculated does not match the signature you provided."
        try:
            expiry = float(expires)
        except ValueError:
            return "Invalid expires value."
        if self._clock() > expiry:
            return "Request has expired"
        return None

    def _sign(self, path: str, expires: str) -> str:
        message = f"GET\n{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
