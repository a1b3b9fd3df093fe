"""The Download Controller (GA4GH DRS) API as the GHGA DCS serves it (protocol §2 D1-D3).

Auth hook: every object route first asks an :data:`AuthPolicy` who is calling. In env
mode (:func:`optional_bearer`) a ``Bearer`` header is accepted but not required, and the
envelope goes to the configured user key. :func:`work_order_token_policy` verifies a
work order token (signature, expiry, claims), answers 401/403 itself (returning a
:class:`Response`), and otherwise returns the token's ``user_public_crypt4gh_key`` and
``accession``, which is where the real DCS takes the envelope's recipient from.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ghga_tasks.sandbox.app import Request, Response, Router, httpyexpect_error, json_response
from ghga_tasks.sandbox.archive import Archive, Missing, Staged, Staging
from ghga_tasks.sandbox.faults import Faults, retry_after_header
from ghga_tasks.sandbox.files import StoredFile
from ghga_tasks.sandbox.presign import OUTBOX_PATH
from ghga_tasks.sandbox.wps import invalid_credentials, not_authenticated

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
    verify: Callable[[str], Mapping[str, Any] | None], fallback: AuthPolicy | None = None
) -> AuthPolicy:
    """The real DCS's policy: a valid work order token for this very object (§2 D2).

    ``verify`` returns the claims of a genuine, unexpired token, else None. With a
    ``fallback`` (the sandbox's default), requests without a JWT-shaped bearer are left
    to it, so env-mode clients keep working next to WPS-mode ones; without one, such
    requests get the real DCS's 401.
    """

    def policy(request: Request, object_id: str) -> AuthContext | Response:
        token = request.bearer_token
        if fallback is not None and (token is None or token.count(".") != 2):
            return fallback(request, object_id)
        response = _check_work_order_token(token, verify, object_id)
        if isinstance(response, Response):
            response.file_id = object_id
        return response

    return policy


def _check_work_order_token(
    token: str | None, verify: Callable[[str], Mapping[str, Any] | None], object_id: str
) -> AuthContext | Response:
    if token is None:
        return not_authenticated()
    claims = verify(token)
    if claims is None:
        return invalid_credentials()
    if claims.get("accession") != object_id:
        return httpyexpect_error(
            403,
            "wrongFileAuthorizationError",
            "Endpoint file ID did not match file ID announced in work order token.",
        )
    try:
        key = base64.b64decode(str(claims["user_public_crypt4gh_key"]), validate=True)
    except (binascii.Error, ValueError):
        return invalid_credentials()
    if len(key) != 32:
        return invalid_credentials()
    return AuthContext(user_public_key=key, accession=object_id)


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
        response = _faulty_probe(faults, object_id, self.archive.retry_after_min)
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
        body = {
            "id": accession,
            "self_uri": f"drs://{request.host}/{accession}",
            "size": stored.encrypted_size if size is None else size,
            "created_time": stored.created_time,
            "checksums": [{"checksum": stored.sha256, "type": "sha-256"}],
            "access_methods": [{"type": "s3", "access_url": {"url": url}}],
        }
        cache = f"max-age={max(0, int(ttl))}, private"
        return json_response(200, body, headers=[("Cache-Control", cache)])


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
        body = b'{"id": "' + object_id.encode() + b'", "size": 12'  # cut mid-object
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        response = Response(200, [body], headers)
    else:
        return None
    response.file_id = object_id
    response.fault = response.fault or override
    return response
