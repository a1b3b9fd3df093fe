"""The Download Controller (GA4GH DRS) API as the GHGA DCS serves it (``docs/protocol.md``).

Auth, as the DCS does it: every object route first asks an :data:`AuthPolicy` who is
calling. :func:`work_order_token_policy` is the DCS's own: no bearer (or not a bearer) is
FastAPI ``HTTPBearer``'s 401 ``Not authenticated`` with ``WWW-Authenticate: Bearer``; a
bearer that is not a genuine, unexpired work order token (60 s leeway) is 401 ``Invalid
authentication credentials`` without that header; a token for another file is 403
``wrongFileAuthorizationError``. Otherwise it returns the token's
``user_public_crypt4gh_key``, which is where the real DCS takes the envelope's recipient
from. With ``env_clients`` (the project's ``env`` work package source, which production
cannot serve) a request without a JWT-shaped bearer is served for the configured user key
instead; JWT-shaped bearers are still verified strictly.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ghga_tasks.sandbox.app import Request, Response, Router, httpyexpect_error, json_response
from ghga_tasks.sandbox.archive import Archive, Missing, Staged, Staging
from ghga_tasks.sandbox.faults import Faults, retry_after_header
from ghga_tasks.sandbox.files import StoredFile
from ghga_tasks.sandbox.presign import OUTBOX_PATH
from ghga_tasks.sandbox.service_errors import invalid_credentials, not_authenticated

logger = logging.getLogger(__name__)

DCS_BASE_PATH = "/ga4gh/drs/v1"
_OBJECT_ID = r"(?P<object_id>[^/]+)"


@dataclass(frozen=True)
class AuthContext:
    """What the caller's credentials say: whose key gets envelopes, for which file."""

    user_public_key: bytes
    accession: str | None = None  # None: any file


AuthPolicy = Callable[[Request, str], "AuthContext | Response"]


def optional_bearer(user_public_key: bytes) -> AuthPolicy:
    """Env-mode policy: any or no ``Authorization`` header; envelopes for this key."""
    context = AuthContext(user_public_key=user_public_key)

    def policy(request: Request, object_id: str) -> AuthContext | Response:
        return context

    return policy


def work_order_token_policy(
    verify: Callable[[str], Mapping[str, Any] | None], env_clients: AuthPolicy | None = None
) -> AuthPolicy:
    """The real DCS's policy: a valid work order token for this very object.

    ``verify`` returns the claims of a genuine, unexpired token, else None. With
    ``env_clients``, requests without a JWT-shaped bearer are left to it (so env-mode
    clients can be served next to WPS-mode ones); without it, they get the DCS's 401.
    """

    def policy(request: Request, object_id: str) -> AuthContext | Response:
        token = request.bearer_token
        if env_clients is not None and not _jwt_shaped(token):
            return env_clients(request, object_id)
        response = _check_work_order_token(token, verify, object_id)
        if isinstance(response, Response):
            response.file_id = object_id
        return response

    return policy


def _jwt_shaped(token: str | None) -> bool:
    """A compact JWS has three dot-separated parts; anything else is no work order token."""
    return token is not None and token.count(".") == 2


def _check_work_order_token(
    token: str | None, verify: Callable[[str], Mapping[str, Any] | None], object_id: str
) -> AuthContext | Response:
    if token is None:
        return not_authenticated()
    claims = verify(token)
    if claims is None:
        return invalid_credentials()
    key = _crypt4gh_key(claims.get("user_public_crypt4gh_key"))
    if key is None:  # the DCS's claims model refuses it: still an invalid token
        return invalid_credentials()
    if claims.get("accession") != object_id:
        return wrong_file()
    return AuthContext(user_public_key=key, accession=object_id)


def _crypt4gh_key(claim: object) -> bytes | None:
    """The 32 raw bytes of a base64 Crypt4GH public key claim, or None."""
    try:
        key = base64.b64decode(str(claim), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == 32 else None


def wrong_file() -> Response:
    """The DCS's 403 when the token's file is not the one in the path."""
    return httpyexpect_error(
        403,
        "wrongFileAuthorizationError",
        "Endpoint file ID did not match file ID announced in work order token.",
    )


def no_such_object(object_id: str) -> Response:
    """The DCS's 404 for unknown or unavailable files."""
    response = httpyexpect_error(
        404, "noSuchObject", "The requested DrsObject wasn't found", {"object_id": object_id}
    )
    response.file_id = object_id
    return response


class DownloadControllerApi:
    """Handlers for ``/health``, ``/objects/{id}`` and ``/objects/{id}/envelopes``."""

    def __init__(self, archive: Archive, auth: AuthPolicy) -> None:
        self.archive = archive
        self.auth = auth

    def register(self, router: Router, base_path: str = DCS_BASE_PATH) -> None:
        router.add("GET", f"{base_path}/health", self.health)
        router.add("GET", f"{base_path}/objects/{_OBJECT_ID}", self.get_object)
        router.add("GET", f"{base_path}/objects/{_OBJECT_ID}/envelopes", self.get_envelope)

    def health(self, request: Request) -> Response:
        return json_response(200, {"status": "OK"})

    def get_object(self, request: Request, object_id: str) -> Response:
        """D2: the DRS object (200), still staging (202) or no such object (404)."""
        faults = self.archive.faults(object_id)
        if faults is not None:
            faults.delay()
        context = self.auth(request, object_id)
        if isinstance(context, Response):
            return context
        estimate = self.archive.estimated_staging_seconds(object_id)
        response = _faulty_probe(faults, object_id, estimate)
        if response is not None:
            return response
        match self.archive.probe(object_id):
            case Staged(file=stored):
                response = self._drs_object(request, stored)
            case Staging(retry_after=seconds):
                response = staging_response(str(seconds), faults)
            case Missing():
                response = no_such_object(object_id)
        response.file_id = object_id
        return response

    def get_envelope(self, request: Request, object_id: str) -> Response:
        """D3: a JSON string, base64 of the 124-byte header for the caller's key."""
        faults = self.archive.faults(object_id)
        if faults is not None:
            faults.delay()
        context = self.auth(request, object_id)
        if isinstance(context, Response):
            return context
        status = faults.take_envelope_failure() if faults else None
        if status is not None:
            response = internal_error(status)
            response.file_id, response.fault = object_id, "envelope_status"
            return response
        envelope = self.archive.envelope(object_id, context.user_public_key)
        if envelope is None:
            return no_such_object(object_id)
        encoded = base64.b64encode(envelope).decode("ascii")
        response = json_response(200, encoded, headers=[("Cache-Control", "no-store")])
        response.file_id = object_id
        return response

    def _drs_object(self, request: Request, stored: StoredFile) -> Response:
        ttl = self.archive.url_ttl_for(stored.spec.file_id)
        base_url = self.archive.object_base_url or request.base_url
        url = self.archive.presigner.url(base_url, f"{OUTBOX_PATH}/{stored.object_id}", ttl)
        accession = stored.spec.file_id
        faults = self.archive.faults(accession)
        size = faults.take_drs_size() if faults else None
        body = {  # the DCS's response model, fields in its order
            "access_methods": [{"access_url": {"url": url}, "type": "s3"}],
            "checksums": [{"checksum": stored.sha256, "type": "sha-256"}],
            "created_time": stored.created_time,
            "id": accession,
            "self_uri": f"drs://{request.host}/{accession}",
            "size": stored.encrypted_size if size is None else size,
        }
        cache = f"max-age={max(0, int(ttl))}, private"
        return untyped_json_response(200, body, headers=[("Cache-Control", cache)])


def untyped_json_response(
    status: int, payload: object, *, headers: list[tuple[str, str]]
) -> Response:
    """Compact JSON without ``Content-Type``: the DCS sends its DRS object as a plain
    response built from the model's JSON, and sets no media type."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, [body], [("Content-Length", str(len(body))), *headers])


# --- injected API faults (see ghga_tasks.sandbox.faults) ----------------------------------


def internal_error(status: int) -> Response:
    """An error the DCS could send: ``internalServerError`` in the httpyexpect shape."""
    return httpyexpect_error(status, "internalServerError", "Internal Server Error.")


def staging_response(seconds: str, faults: Faults | None) -> Response:
    """A 202 while staging; a fault may replace the ``Retry-After`` value."""
    replaced = faults.take_staging_retry_after() if faults is not None else None
    if replaced is not None:
        seconds = replaced
    headers = [("Retry-After", seconds), ("Cache-Control", "no-store")]
    return json_response(202, None, headers=headers)


def _faulty_probe(faults: Faults | None, object_id: str, retry_after: int) -> Response | None:
    """The answer an injected fault gives to ``GET /objects/{id}``, or None (no fault)."""
    if faults is None:
        return None
    status = faults.take_api_failure()
    override = None if status is not None else faults.take_probe_override()
    if status is not None:
        response = internal_error(status)
        if faults.retry_after is not None:
            response.headers.append(("Retry-After", retry_after_header(faults.retry_after)))
        response.fault = "api_fail_status"
    elif override == "missing":
        response = no_such_object(object_id)
    elif override == "staging":
        response = staging_response(str(retry_after), faults)
    elif override == "malformed":
        body = b'{"id":"' + object_id.encode() + b'","size":12'  # cut mid-object
        response = Response(200, [body], [("Content-Length", str(len(body)))])
    else:
        return None
    response.file_id = object_id
    response.fault = response.fault or override
    return response
