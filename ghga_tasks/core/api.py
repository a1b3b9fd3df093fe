"""Client for the Download Controller (DRS) API: probing objects and fetching envelopes.

Each endpoint has one small function that turns a response into a typed result
(``Staged`` / ``Staging`` / ``Unavailable``) or a typed error. Transport retries
(connection errors, 408/429/5xx with backoff, ``Retry-After`` honoured) live in the
``requests.Session`` via urllib3 ``Retry``; only idempotent GETs are retried.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from .envelope import check_envelope, decode_envelope_body
from .errors import ApiError, AuthorizationError, ConfigurationError, Unreachable
from .prefetch import Ahead

log = logging.getLogger(__name__)

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
DEFAULT_RETRY_AFTER = 5.0  # when a 202 carries a Retry-After we cannot read
MAX_RETRY_AFTER = 300.0  # the real DCS never asks for more; a larger value is a server bug
# GHGA's Download API wants a fresh work order token per file, which only the wps source
# gets (docs/protocol.md); env mode sends none, or one fixed token.
NO_TOKEN_HINT = (
    "; this Download API wants a work order token for each file: "
    "use work_package_source: wps (the download token from the GHGA data portal)"
)
HEALTH_TIMEOUT = 5.0  # seconds, as GHGA's own client allows its health check
MAX_OBJECT_SIZE = 2**53  # 9 PB: a larger DRS size is a server bug, not a file
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


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


class LenientRetry(Retry):
    """urllib3 ``Retry`` that survives any ``Retry-After`` (429/503 answers) and says
    what it retries.

    urllib3 raises ``InvalidHeader`` on a garbage value, failing the very request it was
    meant to retry; here garbage means "use the normal backoff" (0 does that), and a
    date or number is capped at ``MAX_RETRY_AFTER``. Each retry logs one line (which
    host, why, when the next try is, and when it gives up) in place of urllib3's own.
    """

    def increment(self, *args: Any, **kwargs: Any) -> LenientRetry:
        new = super().increment(*args, **kwargs)
        pool, error = kwargs.get("_pool"), kwargs.get("error")
        host = f"{pool.host}:{pool.port}" if pool is not None else "the server"
        log.warning("%s", _retry_line(new, host, error))
        return new

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(super().parse_retry_after(retry_after))
        except (InvalidHeader, ValueError, OverflowError):
            log.warning("ignoring unreadable Retry-After %r", retry_after[:40])
            return 0.0
        return min(seconds, MAX_RETRY_AFTER)


def _retry_line(retry: Retry, host: str, error: Exception | None) -> str:
    """``cannot reach HOST (why); trying again in 2.0 s, giving up at 22:31:07``."""
    last = retry.history[-1] if retry.history else None
    why = f"HTTP {last.status}" if last is not None and last.status else _short_error(error)
    wait = retry.get_backoff_time()
    later = retry.total if isinstance(retry.total, int) else 0  # sleeps after this one
    total_wait = wait + sum(
        min(retry.backoff_max, retry.backoff_factor * 2 ** (len(retry.history) + k))
        for k in range(max(later, 0))
    )
    give_up = time.strftime("%H:%M:%S", time.localtime(time.time() + total_wait))
    return f"cannot reach {host} ({why}); trying again in {wait:.1f} s, giving up at {give_up}"


def _short_error(error: Exception | None) -> str:
    text = str(error or "no answer")
    for known in ("Connection refused", "timed out", "Name or service not known", "reset"):
        if known.lower() in text.lower():
            return known.lower()
    return type(error).__name__ if error else "no answer"


class _NoUrllib3RetryLines(logging.Filter):
    """urllib3 logs each retry with its whole Retry repr; ``LenientRetry`` says it better."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying (")


logging.getLogger("urllib3.connectionpool").addFilter(_NoUrllib3RetryLines())


# How many requests the plan sends at once (one probe, after a work order token, per
# file): on a 40 ms round trip 204 files take 2 s with 8 at once, 1 s with 16 (S7). The
# sessions keep as many connections, so none pays a new handshake.
PARALLEL_REQUESTS = 16


def make_session(
    *,
    retries: int = 5,
    pool_size: int = PARALLEL_REQUESTS,
    retried_methods: frozenset[str] = frozenset({"GET", "HEAD"}),
) -> requests.Session:
    """A session that retries transient failures of idempotent requests with backoff
    (``retried_methods``: the requests that are idempotent for the API at hand).

    TLS certificates are always verified (``requests``' default, never switched off).
    """
    retry = LenientRetry(
        total=retries,
        backoff_factor=0.5,
        backoff_max=30,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=retried_methods,
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


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_url_problem(url: str, *, allow_http: bool) -> str:
    """Why ``url`` must not be used ("" if it may): https, or http to loopback, or http
    anywhere when the user set ``allow_http``. The query (a signature) is never shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "is not a valid URL"
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if parts.scheme == "https" and host:
        return ""
    if parts.scheme != "http" or not host:
        return f"{shown} is not an http(s) URL"
    if is_loopback(host) or allow_http:
        return ""
    return (
        f"{shown} is plain http to another machine; tokens and download URLs would travel "
        "unencrypted (set allow_http: true only for a test server you trust)"
    )


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
    return Staged(size=body["size"], url=access_url, sha256=_sha256_checksum(body))


def _sha256_checksum(body: dict[str, Any]) -> str | None:
    """The ``sha-256`` entry of ``checksums``, if it is 64 hex digits (else unknown)."""
    checksums = body.get("checksums")
    if not isinstance(checksums, list):
        return None
    for entry in checksums:
        if isinstance(entry, dict) and entry.get("type") == "sha-256":
            value = entry.get("checksum")
            if isinstance(value, str) and _SHA256_HEX.fullmatch(value):
                return value.lower()
    return None


def _shown(value: Any) -> str:
    """A short, safe rendering of a value from a server (huge ints cannot be printed)."""
    if isinstance(value, int) and not -(10**30) < value < 10**30:
        return "(a number of more than 30 digits)"
    try:
        return repr(value)[:40]
    except (ValueError, RecursionError):
        return f"(a {type(value).__name__})"


def _is_s3(method: Any) -> bool:
    return (
        isinstance(method, dict)
        and method.get("type") == "s3"
        and isinstance(method.get("access_url"), dict)
        and isinstance(method["access_url"].get("url"), str)
        and bool(method["access_url"]["url"])
    )


def _drs_object_problem(body: Any) -> str:
    if not isinstance(body, dict):
        return "DRS object is not a JSON object"
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_OBJECT_SIZE:
        return f"DRS object has an invalid size {_shown(size)}"
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
        allow_http: bool = False,
        url_setting: str = "Download API URL",
    ) -> None:
        self.url_setting = url_setting  # where base_url came from, for messages
        problem = insecure_url_problem(base_url, allow_http=allow_http)
        if problem:
            raise ConfigurationError(setting=url_setting, problem=problem)
        self.allow_http = allow_http
        self.base_url = base_url.rstrip("/")
        self.session = session or make_session()
        self._token_for = token_for or (lambda _file_id: None)
        self.timeout = timeout
        self._ahead = Ahead(self._fetch_ahead, lambda probe: isinstance(probe, Staged))

    def fetch_ahead(self, file_ids: Sequence[str]) -> None:
        """Fetch these files' DRS objects and envelopes in the background, for the
        downloads to come (metadata pipelining, ``prefetch``)."""
        self._ahead.request(file_ids)

    def _fetch_ahead(self, file_id: str) -> tuple[ProbeResult, bytes | None]:
        probe = self._probe(file_id)
        return probe, self._envelope(file_id) if isinstance(probe, Staged) else None

    def _get(self, path: str, file_id: str) -> requests.Response:
        url = f"{self.base_url}{path}"
        headers = {"Accept": "application/json"}
        token = self._token_for(file_id)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as error:
            raise Unreachable(url=url, file_id=file_id, problem=describe(error)) from error
        if response.status_code in (401, 403):
            hint = "" if token else NO_TOKEN_HINT
            raise AuthorizationError(
                url=url,
                file_id=file_id,
                status_code=response.status_code,
                problem=f"not authorized: {error_reason(response)}{hint}",
            )
        return response

    def probe_object(self, file_id: str) -> ProbeResult:
        """``GET /objects/{id}``: staged, still staging, or not there. Triggers staging.
        A fresh answer fetched ahead is used once instead."""
        return self._ahead.probe(file_id) or self._probe(file_id)

    def _probe(self, file_id: str) -> ProbeResult:
        response = self._get(f"/objects/{file_id}", file_id)
        match response.status_code:
            case 200:
                staged = parse_drs_object(
                    _json(response, file_id), url=response.url, file_id=file_id
                )
                return self._checked_download_url(staged, response.url, file_id)
            case 202:
                return Staging(retry_after=parse_retry_after(response.headers.get("Retry-After")))
            case 404 if _is_no_such_object(response):
                return Unavailable(reason=error_reason(response))
            case 404:  # not the DCS's own 404: the base URL points elsewhere
                raise self._not_the_download_api(f"GET /objects/{file_id} answered HTTP 404")
            case status:
                raise ApiError(
                    url=response.url,
                    file_id=file_id,
                    status_code=status,
                    problem=f"unexpected answer to a probe: {error_reason(response)}",
                )

    def check_health(self) -> None:
        """``GET /health``, as GHGA's own client does before it starts: a wrong base URL
        (an HTML 404 page, another service) is a configuration error naming the URL,
        not a batch of "unavailable" files."""
        url = f"{self.base_url}/health"
        try:
            response = self.session.get(url, timeout=(self.timeout[0], HEALTH_TIMEOUT))
        except requests.RequestException as error:
            raise Unreachable(url=url, problem=describe(error)) from error
        if response.status_code == 200 and _status_ok(response):
            return
        raise self._not_the_download_api(f"GET /health answered HTTP {response.status_code}")

    def _not_the_download_api(self, answer: str) -> ConfigurationError:
        return ConfigurationError(
            setting=self.url_setting,
            problem=f"{self.base_url} is not GHGA's Download API ({answer}); check the URL",
        )

    def _checked_download_url(self, staged: Staged, url: str, file_id: str) -> Staged:
        problem = insecure_url_problem(staged.url, allow_http=self.allow_http)
        if problem:
            raise ApiError(
                url=url, file_id=file_id, status_code=200, problem=f"download URL {problem}"
            )
        return staged

    def fetch_envelope(self, file_id: str) -> bytes:
        """``GET /objects/{id}/envelopes``: the 124-byte header, checked to be well-formed
        (who wrote it is the caller's question: ``envelope.check_writer``). One fetched
        ahead is used once instead."""
        return self._ahead.envelope(file_id) or self._envelope(file_id)

    def _envelope(self, file_id: str) -> bytes:
        response = self._get(f"/objects/{file_id}/envelopes", file_id)
        if response.status_code != 200:
            raise ApiError(
                url=response.url,
                file_id=file_id,
                status_code=response.status_code,
                problem=f"could not get the envelope: {error_reason(response)}",
            )
        envelope = decode_envelope_body(response.content, file_id=file_id)
        return check_envelope(envelope, file_id=file_id)


def _is_no_such_object(response: requests.Response) -> bool:
    """The DCS's own 404 for a file it does not have (not a wrong URL's 404 page)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("exception_id") == "noSuchObject"


def _status_ok(response: requests.Response) -> bool:
    """A health answer ``{"status": "OK"}`` in any letter case."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and str(body.get("status", "")).lower() == "ok"


def _json(response: requests.Response, file_id: str) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise ApiError(
            url=response.url,
            file_id=file_id,
            status_code=response.status_code,
            problem="answer is not JSON",
        ) from None


def describe(error: requests.RequestException) -> str:
    """A short reason for a transport failure, without the long urllib3 repr."""
    if isinstance(error, requests.exceptions.RetryError):
        return "gave up after repeated server errors"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS failed: the server's certificate is not trusted or the connection broke"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    if isinstance(error, requests.ConnectionError):
        return f"could not connect ({_short_error(error)})"
    return type(error).__name__
