"""The sandbox's WSGI plumbing: requests, responses, a regex router and a request log.

Design notes:

- No web framework: the sandbox must answer byte-exact status codes, headers and bodies
  as the GHGA services do (``docs/protocol.md``), and a framework's defaults (redirects,
  automatic HEAD, content negotiation) would get in the way.
- APIs are plugged in as route tables: ``ghga_tasks.sandbox.server.build_app`` registers
  the Download Controller and the S3 outbox; a Work Package API (``/wps/...``) or the
  well-known values (``/.well-known/values``) can later call ``router.add(...)`` the same
  way and bring their own token checks (see :mod:`ghga_tasks.sandbox.dcs` for the hook).
- Every request lands in a :class:`RequestLog` that tests read from Python, e.g. to
  assert that no object-store request happened. It holds no query strings (they carry
  signatures) and no token values.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

logger = logging.getLogger(__name__)

Handler = Callable[..., "Response"]
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Request:
    """The parts of a WSGI request that the sandbox APIs look at."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    scheme: str = "http"
    host: str = "127.0.0.1"  # host[:port] as the client addressed us

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Request:
        """Build a request from a WSGI environ (PEP 3333)."""
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = str(environ[key])
        host = headers.get("host") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        return cls(
            method=str(environ["REQUEST_METHOD"]).upper(),
            path=str(environ.get("PATH_INFO") or "/"),
            query=dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)),
            headers=headers,
            scheme=str(environ.get("wsgi.url_scheme", "http")),
            host=host,
        )

    @property
    def base_url(self) -> str:
        """Scheme and authority the client used, for URLs we hand back to it."""
        return f"{self.scheme}://{self.host}"

    @property
    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, if there is one."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass
class Response:
    """Status, headers and a body iterable; ``file_id``/``fault`` only feed the log."""

    status: int
    body: Iterable[bytes] = ()
    headers: list[tuple[str, str]] = field(default_factory=list)
    file_id: str | None = None
    fault: str | None = None


def json_response(
    status: int, payload: object, *, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """A JSON response with an exact ``Content-Length``."""
    body = json.dumps(payload).encode()
    all_headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *headers,
    ]
    return Response(status, [body], all_headers)


def httpyexpect_error(
    status: int, exception_id: str, description: str, data: Mapping[str, object] | None = None
) -> Response:
    """An error body in the GHGA services' httpyexpect shape (docs/protocol.md)."""
    payload = {"exception_id": exception_id, "description": description, "data": dict(data or {})}
    return json_response(status, payload)


@dataclass(frozen=True)
class Route:
    """One entry of the route table: method, full-match path regex, handler."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """A route table that API modules extend with :meth:`add`.

    Handlers are called as ``handler(request, **named_groups)``. A path that matches a
    route with another method answers 405; no match answers 404, both with FastAPI's
    ``{"detail": ...}`` bodies like the real services.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._lock = threading.Lock()

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` on paths that fully match ``pattern``."""
        route = Route(method.upper(), re.compile(pattern), handler)
        with self._lock:
            self._routes.append(route)

    def dispatch(self, request: Request) -> Response:
        """Call the handler for ``request`` or answer 404/405."""
        with self._lock:
            routes = list(self._routes)
        path_known = False
        for route in routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method == request.method:
                return route.handler(request, **match.groupdict())
            path_known = True
        if path_known:
            return json_response(405, {"detail": "Method Not Allowed"})
        return json_response(404, {"detail": "Not Found"})


@dataclass(frozen=True)
class RequestRecord:
    """One served request: enough to assert what a client did, nothing secret."""

    method: str
    path: str  # without query string
    status: int
    timestamp: float  # epoch seconds when the request arrived
    range: str | None  # the Range header as sent
    file_id: str | None = None  # the accession, for DCS and object-store requests
    fault: str | None = None  # the injected fault that shaped the response
    bearer: bool = False  # whether an Authorization: Bearer header came along


class RequestLog:
    """Thread-safe, append-only list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the records so far, oldest first."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def matching(
        self, *, path_prefix: str = "", method: str | None = None, file_id: str | None = None
    ) -> list[RequestRecord]:
        """Records whose path starts with ``path_prefix`` (and method/file, if given)."""
        return [
            record
            for record in self.snapshot()
            if record.path.startswith(path_prefix)
            and (method is None or record.method == method)
            and (file_id is None or record.file_id == file_id)
        ]

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


class SandboxApp:
    """The WSGI callable: dispatch, turn surprises into a GHGA-style 500, log."""

    def __init__(self, router: Router | None = None, log: RequestLog | None = None) -> None:
        self.router = router or Router()
        self.log = log or RequestLog()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        arrived = time.time()
        request = Request.from_environ(environ)
        try:
            response = self.router.dispatch(request)
        except Exception:
            logger.exception("Sandbox handler failed for %s %s", request.method, request.path)
            response = httpyexpect_error(500, "internalServerError", "Internal Server Error.")
        self.log.append(_record(request, response, arrived))
        start_response(_status_line(response.status), response.headers)
        return response.body


def _record(request: Request, response: Response, arrived: float) -> RequestRecord:
    return RequestRecord(
        method=request.method,
        path=request.path,
        status=response.status,
        timestamp=arrived,
        range=request.headers.get("range"),
        file_id=response.file_id,
        fault=response.fault,
        bearer=request.bearer_token is not None,
    )


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"
