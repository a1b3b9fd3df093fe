"""Client for the Download Controller (DRS) API: probing objects and fetching envelopes.

Each endpoint has one small function that turns a response into a typed result
(``Staged`` / ``Staging`` / ``Unavailable``) or a typed error. Transport retries
(connection errors, 408/429/5xx with backoff, ``Retry-After`` honoured) live in the
``requests.Session`` via urllib3 ``Retry``; only idempotent GETs are retried.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .envelope import check_envelope, decode_envelope_body
from .errors import ApiError, AuthorizationError

log = logging.getLogger(__name__)

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
DEFAULT_RETRY_AFTER = 5.0  # when a 202 carries a Retry-After we cannot read
MAX_RETRY_AFTER = 300.0  # the real DCS never asks for more; a larger value is a server bug


@dataclass(frozen=True)
class Staged:
    size: int  # encrypted size of the object, without envelope
    url: str  # presigned object-store URL
    sha256: str | None  # of the decrypted content, when the DRS object has one


@dataclass(frozen=True)
class Staging:
    retry_after: float  # seconds until the archive expects the file to be ready


@dataclass(frozen=True)
class Unavailable:
    reason: str


ProbeResult = Staged | Staging | Unavailable


def make_session(*, retries: int = 5, pool_size: int = 8) -> requests.Session:
    """A session that retries transient failures of idempotent requests with backoff."""
    retry = Retry(
        total=retries,
        backoff_factor=0.5,
        backoff_max=30,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "ghga-tasks"
    return session


def parse_retry_after(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header: integer seconds or an HTTP date.

    Garbage does not crash the run (the official client does): we wait a default.
    """
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError):
            log.warning(
                "ignoring unreadable Retry-After %r, waiting %s s", text, DEFAULT_RETRY_AFTER
            )
            return DEFAULT_RETRY_AFTER
        seconds = when - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_reason(response: requests.Response) -> str:
    """GHGA errors carry ``description`` (httpyexpect) or ``detail`` (FastAPI)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no reason given"
    if isinstance(body, dict):
        for key in ("description", "detail", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.reason or "no reason given"


def parse_drs_object(body: Any, *, url: str, file_id: str) -> Staged:
    """Pick size, the s3 access URL and the sha-256 checksum out of a DRS object."""
    problem = _drs_object_problem(body)
    if problem:
        raise ApiError(url=url, file_id=file_id, status_code=200, problem=problem)
    access_url = next(m["access_url"]["url"] for m in body["access_methods"] if _is_s3(m))
    checksums = body.get("checksums") or []
    sha256 = next(
        (
            c.get("checksum")
            for c in checksums
            if isinstance(c, dict) and c.get("type") == "sha-256"
        ),
        None,
    )
    return Staged(size=body["size"], url=access_url, sha256=sha256)


def _is_s3(method: Any) -> bool:
    return (
        isinstance(method, dict)
        and method.get("type") == "s3"
        and isinstance(method.get("access_url"), dict)
        and isinstance(method["access_url"].get("url"), str)
    )


def _drs_object_problem(body: Any) -> str:
    if not isinstance(body, dict):
        return "DRS object is not a JSON object"
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"DRS object has an invalid size {size!r}"
    methods = body.get("access_methods")
    if not isinstance(methods, list) or not any(_is_s3(m) for m in methods):
        return "DRS object has no s3 access method"
    return ""


class DownloadApi:
    """The Download Controller API of one work package."""

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        token_for: Callable[[str], str | None] | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or make_session()
        self._token_for = token_for or (lambda _file_id: None)
        self.timeout = timeout

    def _get(self, path: str, file_id: str) -> requests.Response:
        url = f"{self.base_url}{path}"
        headers = {"Accept": "application/json"}
        token = self._token_for(file_id)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as error:
            raise ApiError(url=url, file_id=file_id, problem=_describe(error)) from error
        if response.status_code in (401, 403):
            raise AuthorizationError(
                url=url,
                file_id=file_id,
                status_code=response.status_code,
                problem=f"not authorized: {error_reason(response)}",
            )
        return response

    def probe_object(self, file_id: str) -> ProbeResult:
        """``GET /objects/{id}``: staged, still staging, or not there. Triggers staging."""
        response = self._get(f"/objects/{file_id}", file_id)
        match response.status_code:
            case 200:
                return parse_drs_object(_json(response, file_id), url=response.url, file_id=file_id)
            case 202:
                return Staging(retry_after=parse_retry_after(response.headers.get("Retry-After")))
            case 404:
                return Unavailable(reason=error_reason(response))
            case status:
                raise ApiError(
                    url=response.url,
                    file_id=file_id,
                    status_code=status,
                    problem=f"unexpected answer to a probe: {error_reason(response)}",
                )

    def fetch_envelope(self, file_id: str, *, ghga_public_key: bytes) -> bytes:
        """``GET /objects/{id}/envelopes``: the 124-byte header, checked to be GHGA's."""
        response = self._get(f"/objects/{file_id}/envelopes", file_id)
        if response.status_code != 200:
            raise ApiError(
                url=response.url,
                file_id=file_id,
                status_code=response.status_code,
                problem=f"could not get the envelope: {error_reason(response)}",
            )
        envelope = decode_envelope_body(response.content, file_id=file_id)
        return check_envelope(envelope, ghga_public_key=ghga_public_key, file_id=file_id)


def _json(response: requests.Response, file_id: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            url=response.url,
            file_id=file_id,
            status_code=response.status_code,
            problem="answer is not JSON",
        ) from None


def _describe(error: requests.RequestException) -> str:
    """A short reason for a transport failure, without the long urllib3 repr."""
    if isinstance(error, requests.exceptions.RetryError):
        return "gave up after repeated server errors"
    if isinstance(error, requests.ConnectionError):
        return "could not connect"
    if isinstance(error, requests.Timeout):
        return "timed out"
    return type(error).__name__
