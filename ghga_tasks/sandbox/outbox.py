"""The S3-like outbox bucket: presigned GETs with exact Range semantics and faults.

Design notes:

- Bodies are streamed from disk with ``os.pread`` in 1 MiB chunks; waitress's output
  high-water mark pushes back on the handler, so a slow client never makes the sandbox
  hold a whole object in memory.
- ``Range`` follows RFC 9110 as S3 does: ``a-b``, ``a-`` and ``-n`` give 206 with
  ``Content-Range``; an end past the object is clamped; a start past the end (or ``-0``)
  gives 416; a header that does not parse as one range is ignored (200, whole object).
- Faults are injected where a real network would show them: a broken connection is an
  exception raised inside the body iterator after the headers went out, so the client
  sees an incomplete response and never a clean EOF; a stall sends some bytes and then
  nothing; a flipped bit is flipped in the bytes on the wire, never in the stored object.
- Checks run in S3's order: signature and expiry (403), then injected status faults,
  then whether the object exists in the outbox yet (404 ``NoSuchKey``), then the range.
  An injected delay comes first of all, as a slow network would.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from xml.sax.saxutils import escape

from ghga_tasks.sandbox.app import Request, Response, Router
from ghga_tasks.sandbox.archive import Archive
from ghga_tasks.sandbox.faults import Faults, InjectedFault, retry_after_header
from ghga_tasks.sandbox.files import StoredFile
from ghga_tasks.sandbox.presign import OUTBOX_PATH

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_S3_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    408: "RequestTimeout",
    416: "InvalidRange",
    429: "SlowDown",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the object does not have."""


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range inside an object of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range a ``Range`` header asks for; None means "send everything".

    Raises :class:`RangeNotSatisfiable` for a well-formed range outside the object.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # suffix range: the last n bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(0, size - int(last)), size - 1, size)
    start = int(first)
    if last and int(last) < start:  # invalid: ignored, as RFC 9110 says
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = size - 1 if not last else min(int(last), size - 1)
    return ByteRange(start, end, size)


def s3_error(status: int, message: str, resource: str, code: str | None = None) -> Response:
    """An S3-style XML error document."""
    code = code or _S3_CODES.get(status, "InjectedError")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{uuid.uuid4().hex}</RequestId></Error>"
    ).encode()
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    return Response(status, [body], headers)


@dataclass(frozen=True)
class BodyFaults:
    """How one response body goes wrong (all off by default)."""

    then_break: bool = False  # reset the connection after the bytes sent
    stall_seconds: float = 0.0  # go silent this long before breaking
    flip_at: int | None = None  # offset in the body of the byte sent with a bit flipped


def stream_file(
    path: Path, start: int, send: int, *, faults: BodyFaults = BodyFaults()
) -> Iterator[bytes]:
    """Yield ``send`` bytes of ``path`` from ``start``, shaped by ``faults``.

    The first item is empty so the server sends the headers even when ``send`` is 0.
    """
    yield b""
    fd = os.open(path, os.O_RDONLY)
    try:
        offset, end = start, start + send
        while offset < end:
            chunk = os.pread(fd, min(READ_CHUNK, end - offset), offset)
            if not chunk:
                raise RuntimeError(f"{path} ended at {offset}, before byte {end}")
            flip = None if faults.flip_at is None else faults.flip_at - (offset - start)
            if flip is not None and 0 <= flip < len(chunk):
                chunk = chunk[:flip] + bytes([chunk[flip] ^ 0x01]) + chunk[flip + 1 :]
            offset += len(chunk)
            yield chunk
    finally:
        os.close(fd)
    if faults.stall_seconds:
        time.sleep(faults.stall_seconds)
    if faults.then_break or faults.stall_seconds:
        raise InjectedFault(f"connection dropped after {send} bytes (injected)")


class OutboxApi:
    """``GET /s3/outbox/{object uuid}`` with presigned-URL checks."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def register(self, router: Router, base_path: str = OUTBOX_PATH) -> None:
        router.add("GET", rf"{base_path}/(?P<object_id>[^/]+)", self.get_object)

    def get_object(self, request: Request, object_id: str) -> Response:
        stored = self.archive.by_object_id(object_id)
        faults = self.archive.faults(stored.spec.file_id) if stored else None
        if faults is not None:
            faults.delay()
        problem = self.archive.presigner.problem(request.path, request.query)
        if problem is not None:
            return s3_error(403, problem, request.path)
        failure = faults.take_failure() if faults else None
        if failure is not None:
            response = s3_error(failure, "Injected failure", request.path)
            response.fault = "fail_status"
            if faults is not None and faults.retry_after is not None:
                response.headers.append(("Retry-After", retry_after_header(faults.retry_after)))
        elif stored is None or not self.archive.in_outbox(stored.spec.file_id):
            response = s3_error(404, "The specified key does not exist.", request.path)
        else:
            response = self._object(request, stored, faults)
        if stored is not None:
            response.file_id = stored.spec.file_id
        return response

    def _object(self, request: Request, stored: StoredFile, faults: Faults | None) -> Response:
        size = stored.encrypted_size
        ignored = False
        try:
            byte_range = parse_range(request.headers.get("range"), size)
            if byte_range is not None and faults is not None and faults.take_ignore_range():
                byte_range, ignored = None, True  # 200 and everything, as if Range were unknown
        except RangeNotSatisfiable:
            response = s3_error(416, "The requested range is not satisfiable", request.path)
            response.headers.append(("Content-Range", f"bytes */{size}"))
            return response
        start, length = (0, size) if byte_range is None else (byte_range.start, byte_range.length)
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(length)),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{stored.object_id}"'),
        ]
        if byte_range is not None:
            headers.append(("Content-Range", byte_range.content_range))
        response = Response(206 if byte_range else 200, headers=headers)
        response.fault = "ignore_range" if ignored else None
        response.body = self._body(stored.object_path, start, length, faults, response)
        return response

    @staticmethod
    def _body(
        path: Path, start: int, length: int, faults: Faults | None, response: Response
    ) -> Iterator[bytes]:
        """The body iterator, shortened, stalled, broken or corrupted if a fault says so."""
        if faults is None:
            return stream_file(path, start, length)
        flip = faults.take_flip(start, length)
        shaped = BodyFaults(flip_at=flip)
        if flip is not None:
            response.fault = "flip_byte"
        if (cut := faults.take_drop(length)) is not None:
            response.fault = "drop"
            return stream_file(path, start, cut, faults=replace(shaped, then_break=True))
        if (cut := faults.take_stall(length)) is not None:
            response.fault = "stall"
            stall = BodyFaults(stall_seconds=faults.stall_seconds, flip_at=flip)
            return stream_file(path, start, cut, faults=stall)
        if (short := faults.take_short(length)) is not None:
            response.fault = "short_body"
            return stream_file(path, start, short, faults=shaped)
        return stream_file(path, start, length, faults=shaped)
