"""The sandbox's Well-Known Value Service and Work Package Service (protocol §2 W1, P1, P2).

    WellKnownValuesApi   GET /.well-known/values, /.well-known/values/{name}, /health
    WorkPackageApi       GET  /wps/work-packages/{id}
                         POST /wps/work-packages/{id}/files/{accession}/work-order-tokens
    WorkOrderSigner      ES256 key pair: the WPS signs work order tokens, the DCS verifies

There is no data portal, so :meth:`WorkPackageApi.mint` plays its part (§8 "Token
minting"): it makes a work package for a user key and returns the download token
``<id>:<base64 SealedBox(access token)>`` once; only the token's SHA-256 is kept for
checking, as the real WPS does. Tests can still read everything that was handed out
(:attr:`WorkPackageApi.issued_secrets`) to prove a client never leaks it.

Faults for client tests, all off by default: WKVS values left out or replaced
(:attr:`WellKnownValuesApi.omit`, :attr:`~WellKnownValuesApi.overrides`), work order
tokens issued already expired (:meth:`WorkPackageApi.expire_next_work_order_tokens`) or
claiming another user key (:attr:`WorkPackageApi.claimed_user_key`), files withdrawn
from a package (:meth:`WorkPackageApi.withdraw_file`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.public import PublicKey, SealedBox

from ghga_tasks.sandbox.app import Request, Response, Router, json_response
from ghga_tasks.sandbox.presign import OUTBOX_PATH

WKVS_BASE_PATH = "/.well-known"
WPS_BASE_PATH = "/wps"
UCS_BASE_PATH = "/ucs"  # listed because the official client insists; never served
WORK_ORDER_TOKEN_LIFETIME = 30  # seconds, as the real WPS (WORK_ORDER_TOKEN_VALID_SECONDS)
WORK_PACKAGE_VALID_DAYS = 30
ACCESS_TOKEN_LENGTH = 24
REQUIRED_CLAIMS = ("work_type", "file_id", "accession", "user_public_crypt4gh_key", "iat", "exp")
_PACKAGE_ID = r"(?P<package_id>[^/]+)"
_ACCESSION = r"(?P<accession>[^/]+)"
_FILE_ID_NAMESPACE = uuid.UUID("6f0c6a4e-2f4b-4c55-9a37-9d1f3a0c1e55")


def not_authenticated() -> Response:
    """FastAPI ``HTTPBearer``'s answer to a missing bearer token (§2)."""
    return json_response(
        401, {"detail": "Not authenticated"}, headers=[("WWW-Authenticate", "Bearer")]
    )


def invalid_credentials() -> Response:
    """GHGA's auth policies' answer to a bad or expired JWT (§2)."""
    return json_response(401, {"detail": "Invalid authentication credentials"})


def forbidden(reason: str) -> Response:
    return json_response(403, {"detail": reason})


def internal_file_id(accession: str) -> str:
    """The WOT's ``file_id`` claim: an internal UUID per accession (stable, not the outbox ID)."""
    return str(uuid.uuid5(_FILE_ID_NAMESPACE, accession))


def seal(plaintext: str, public_key: bytes) -> str:
    """base64 of a NaCl SealedBox to a Crypt4GH public key, as GHGA seals tokens (§3.2)."""
    return base64.b64encode(SealedBox(PublicKey(public_key)).encrypt(plaintext.encode())).decode()


class WorkOrderSigner:
    """The WPS's signing key and the DCS's check of what it signed (ES256, §3.3)."""

    def __init__(self) -> None:
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        self._public_key = self._private_key.public_key()

    def sign(self, claims: Mapping[str, Any]) -> str:
        # The real WPS sends a bare {"alg": "ES256"} header; PyJWT adds "typ" unless told not to.
        return jwt.encode(dict(claims), self._private_key, algorithm="ES256", headers={"typ": None})

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims if signature, expiry and required claims check out, else None."""
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["ES256"],
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("work_type") != "download":
            return None
        return dict(claims)


@dataclass(frozen=True)
class MintedWorkPackage:
    """What the data portal would show the user once, plus what only tests may see."""

    work_package_id: str
    download_token: str = field(repr=False)  # "<id>:<sealed access token>"
    access_token: str = field(repr=False)  # plaintext; the WPS itself keeps only its hash


@dataclass
class _StoredPackage:
    token_sha256: str
    files: dict[str, str]  # accession -> extension with a leading dot (or "")
    user_public_key: bytes
    created: float  # epoch seconds
    expires: float


class WellKnownValuesApi:
    """``/.well-known/values``: where the other APIs are and GHGA's Crypt4GH keys (W1-W3)."""

    def __init__(self, ghga_public_keys: Mapping[str, bytes], dcs_base_path: str) -> None:
        self.ghga_public_keys = dict(ghga_public_keys)
        self.dcs_base_path = dcs_base_path
        self.omit: set[str] = set()  # fault: leave these values out of the answer
        self.overrides: dict[str, Any] = {}  # fault: answer these values instead

    def register(self, router: Router, base_path: str = WKVS_BASE_PATH) -> None:
        router.add("GET", f"{re.escape(base_path)}/health", self.health)
        router.add("GET", f"{re.escape(base_path)}/values", self.values)
        router.add("GET", f"{re.escape(base_path)}/values/(?P<name>[^/]+)", self.value)

    def health(self, request: Request) -> Response:
        return json_response(200, {"status": "OK"})

    def all_values(self, base_url: str) -> dict[str, Any]:
        keys = {
            alias: base64.b64encode(key).decode() for alias, key in self.ghga_public_keys.items()
        }
        values: dict[str, Any] = {
            "crypt4gh_public_keys": keys,
            "wps_api_url": f"{base_url}{WPS_BASE_PATH}",
            "dcs_api_url": f"{base_url}{self.dcs_base_path}",
            "ucs_api_url": f"{base_url}{UCS_BASE_PATH}",
            "storage_aliases": {"HD01": f"{base_url}{OUTBOX_PATH}"},
            "storage_labels": {"HD01": "Sandbox data hub"},
        }
        values.update(self.overrides)
        return {name: value for name, value in values.items() if name not in self.omit}

    def values(self, request: Request) -> Response:
        return json_response(200, self.all_values(request.base_url))

    def value(self, request: Request, name: str) -> Response:
        values = self.all_values(request.base_url)
        if name not in values:
            return json_response(404, {"detail": f"The value {name} is not configured"})
        return json_response(200, {name: values[name]})


class WorkPackageApi:
    """The download half of the WPS: work packages and sealed work order tokens."""

    def __init__(self, signer: WorkOrderSigner, *, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self._clock = clock
        self._lock = threading.Lock()
        self._packages: dict[str, _StoredPackage] = {}
        self._expire_next = 0.0
        self.work_order_token_lifetime: float = WORK_ORDER_TOKEN_LIFETIME
        self.claimed_user_key: bytes | None = None  # fault: WOTs claim this key instead
        self.issued_secrets: list[str] = []  # every token handed out, for leak tests

    def register(self, router: Router, base_path: str = WPS_BASE_PATH) -> None:
        root = f"{re.escape(base_path)}/work-packages/{_PACKAGE_ID}"
        router.add("GET", root, self.get_work_package)
        router.add(
            "POST", f"{root}/files/{_ACCESSION}/work-order-tokens", self.create_work_order_token
        )
        router.add(
            "GET",
            f"{re.escape(base_path)}/health",
            lambda request: json_response(200, {"status": "OK"}),
        )

    # --- the data portal's part -----------------------------------------------------------

    def mint(
        self,
        files: Mapping[str, str],
        user_public_key: bytes,
        *,
        valid_seconds: float = WORK_PACKAGE_VALID_DAYS * 86400,
    ) -> MintedWorkPackage:
        """A new work package for ``files`` (accession -> extension), sealed to the user."""
        package_id = str(uuid.uuid4())
        alphabet = string.ascii_letters + string.digits
        access_token = "".join(secrets.choice(alphabet) for _ in range(ACCESS_TOKEN_LENGTH))
        now = self._clock()
        stored = _StoredPackage(
            token_sha256=hashlib.sha256(access_token.encode()).hexdigest(),
            files={accession: _dotted(ext) for accession, ext in files.items()},
            user_public_key=bytes(user_public_key),
            created=now,
            expires=now + valid_seconds,
        )
        download_token = f"{package_id}:{seal(access_token, user_public_key)}"
        with self._lock:
            self._packages[package_id] = stored
            self.issued_secrets += [download_token, access_token]
        return MintedWorkPackage(package_id, download_token, access_token)

    def withdraw_file(self, package_id: str, accession: str) -> None:
        """Fault: take a file out of a package (as if access to it was revoked)."""
        with self._lock:
            del self._packages[package_id].files[accession]

    def expire_next_work_order_tokens(self, count: float = 1) -> None:
        """Fault: the next ``count`` WOTs (``math.inf``: all) are issued already expired."""
        with self._lock:
            self._expire_next = count

    # --- P1 and P2 ------------------------------------------------------------------------

    def get_work_package(self, request: Request, package_id: str) -> Response:
        """P1: the work package's details, for the holder of its access token."""
        found = self._authorized_package(request, package_id)
        if isinstance(found, Response):
            return found
        return json_response(
            200,
            {
                "type": "download",
                "files": dict(found.files),
                "created": _iso(found.created),
                "expires": _iso(found.expires),
                "research_data_upload_box_id": None,
                "file_upload_box_id": None,
            },
        )

    def create_work_order_token(
        self, request: Request, package_id: str, accession: str
    ) -> Response:
        """P2: a WOT for one file, sealed to the package's user key; 201 with a JSON string."""
        found = self._authorized_package(request, package_id)
        if isinstance(found, Response):
            return found
        if accession not in found.files:
            return forbidden("File is not contained in work package")
        token = self.signer.sign(self._claims(accession, found.user_public_key))
        sealed = seal(token, found.user_public_key)
        with self._lock:
            self.issued_secrets += [token, sealed]
        response = json_response(201, sealed, headers=[("Cache-Control", "max-age=30, private")])
        response.file_id = accession
        return response

    def _authorized_package(self, request: Request, package_id: str) -> _StoredPackage | Response:
        """The package, or the WPS's 401/403/422 answer (reasons as in M ``repository.py``)."""
        token = request.bearer_token
        if token is None:
            return not_authenticated()
        try:
            uuid.UUID(package_id)
        except ValueError:
            return json_response(
                422,
                {
                    "detail": [
                        {
                            "loc": ["path", "work_package_id"],
                            "msg": "Input should be a valid UUID",
                            "type": "uuid_parsing",
                        }
                    ]
                },
            )
        with self._lock:
            stored = self._packages.get(package_id)
        if stored is None:
            return forbidden("Work package not found")
        if not secrets.compare_digest(
            hashlib.sha256(token.encode()).hexdigest(), stored.token_sha256
        ):
            return forbidden("Invalid work package access token")
        if not stored.created <= self._clock() < stored.expires:
            return forbidden("Work package has expired")
        return stored

    def _claims(self, accession: str, user_public_key: bytes) -> dict[str, Any]:
        issued_at = int(self._clock())
        lifetime = self.work_order_token_lifetime
        with self._lock:
            if self._expire_next > 0:
                self._expire_next -= 1
                # Issued a lifetime ago and expired since: looks normal, is refused by the DCS.
                issued_at -= math.ceil(lifetime) + 5
        key = self.claimed_user_key or user_public_key
        return {
            "work_type": "download",
            "file_id": internal_file_id(accession),
            "accession": accession,
            "user_public_crypt4gh_key": base64.b64encode(key).decode(),
            "iat": issued_at,
            "exp": issued_at + int(lifetime),
        }


def _dotted(extension: str) -> str:
    extension = extension.strip()
    return extension if not extension or extension.startswith(".") else f".{extension}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def files_of(specs: Iterable[Any]) -> dict[str, str]:
    """accession -> extension for sandbox file specs (anything with file_id, extension)."""
    return {spec.file_id: spec.extension for spec in specs}
