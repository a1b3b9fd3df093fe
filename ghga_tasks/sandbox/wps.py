"""The sandbox's Work Package Service (``docs/protocol.md``), download half.

    WorkPackageApi    GET  /wps/work-packages/{id}
                      POST /wps/work-packages/{id}/files/{accession}/work-order-tokens
    WorkOrderSigner   ES256 key pair: the WPS signs work order tokens, the DCS verifies
                      them as GHGA's DCS does (60 s leeway on ``exp``)

There is no data portal, so :meth:`WorkPackageApi.mint` plays its part: it makes a
work package for a user key and returns the download token
``<id>:<base64 SealedBox(access token)>`` once; only the token's SHA-256 is kept for
checking, as the real WPS does. Tests can still read everything that was handed out
(:attr:`WorkPackageApi.issued_secrets`) to prove a client never leaks it.

Refusals are the WPS's, checked in its order: no bearer 401; a work package ID that is no
UUID4 422; then 403 with a ``detail``: ``Work package not found``, ``Invalid work package
access token``, ``Work package has expired``, ``Download access has been revoked``; and
for a work order token also ``Work package type must be DOWNLOAD to obtain a download
access WOT``, ``File is not contained in work package``, ``File not available for
download``.

Hooks for client tests, all off by default: :meth:`~WorkPackageApi.revoke` a package,
:meth:`~WorkPackageApi.make_unavailable` a file (its work order tokens are refused),
:meth:`~WorkPackageApi.mint_upload` a package of the wrong type,
:meth:`~WorkPackageApi.withdraw_file` from a package, work order tokens issued already
expired (:meth:`~WorkPackageApi.expire_next_work_order_tokens`) or claiming another user
key (:attr:`~WorkPackageApi.claimed_user_key`).
"""

from __future__ import annotations

import base64
import hashlib
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
from ghga_tasks.sandbox.service_errors import forbidden, not_authenticated, uuid4_or_error

WPS_BASE_PATH = "/wps"
WORK_ORDER_TOKEN_LIFETIME = 30  # seconds, as the real WPS (WORK_ORDER_TOKEN_VALID_SECONDS)
WORK_ORDER_TOKEN_LEEWAY = 60  # seconds the DCS still accepts a token after its exp
EXPIRED_BEYOND_LEEWAY = WORK_ORDER_TOKEN_LEEWAY + 30  # how stale "expired" tokens are issued
WORK_PACKAGE_VALID_DAYS = 30
ACCESS_TOKEN_LENGTH = 24
REQUIRED_CLAIMS = ("work_type", "file_id", "accession", "user_public_crypt4gh_key", "iat", "exp")
DOWNLOAD, UPLOAD = "download", "upload"
_PACKAGE_ID = r"(?P<package_id>[^/]+)"
_ACCESSION = r"(?P<accession>[^/]+)"
_FILE_ID_NAMESPACE = uuid.UUID("6f0c6a4e-2f4b-4c55-9a37-9d1f3a0c1e55")


def internal_file_id(accession: str) -> str:
    """The WOT's ``file_id`` claim: an internal UUID per accession (stable, not the outbox ID)."""
    return str(uuid.uuid5(_FILE_ID_NAMESPACE, accession))


def seal(plaintext: str, public_key: bytes) -> str:
    """base64 of a NaCl SealedBox to a Crypt4GH public key, as GHGA seals tokens."""
    return base64.b64encode(SealedBox(PublicKey(public_key)).encrypt(plaintext.encode())).decode()


class WorkOrderSigner:
    """The WPS's signing key, and the DCS's check of what it signed (ES256).

    The check is the one GHGA's DCS makes through its JWT library: signature, the
    required claims, numeric time claims, ``exp`` no more than
    :data:`WORK_ORDER_TOKEN_LEEWAY` seconds in the past (``nbf``, if present, no more
    than that in the future; ``iat`` is not compared with the clock), and a download
    work type.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        self._public_key = self._private_key.public_key()
        self._clock = clock

    def sign(self, claims: Mapping[str, Any]) -> str:
        # The real WPS sends a bare {"alg": "ES256"} header; PyJWT adds "typ" unless told not to.
        return jwt.encode(dict(claims), self._private_key, algorithm="ES256", headers={"typ": None})

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a genuine, current download work order token, else None."""
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["ES256"],
                # Time claims are checked below, with the DCS's own leeway rules.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return None
        if claims.get("work_type") != DOWNLOAD or not self._current(claims):
            return None
        return dict(claims)

    def _current(self, claims: Mapping[str, Any]) -> bool:
        """Whether the time claims are numbers and the token is within its leeway."""
        times = {name: claims[name] for name in ("exp", "nbf", "iat") if name in claims}
        if not all(_is_number(value) for value in times.values()):
            return False
        now = self._clock()
        if times["exp"] < now - WORK_ORDER_TOKEN_LEEWAY:
            return False
        return "nbf" not in times or times["nbf"] <= now + WORK_ORDER_TOKEN_LEEWAY


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
    work_type: str = DOWNLOAD
    revoked: bool = False  # the user's access to the dataset (or box) was withdrawn
    upload_box_ids: tuple[str, str] | None = None  # research data box, file box (upload)


class WorkPackageApi:
    """The download half of the WPS: work packages and sealed work order tokens."""

    def __init__(self, signer: WorkOrderSigner, *, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self._clock = clock
        self._lock = threading.Lock()
        self._packages: dict[str, _StoredPackage] = {}
        self._unavailable: set[str] = set()  # accessions without an accession -> file ID map
        self._expire_next = 0.0
        self._expired_for = float(EXPIRED_BEYOND_LEEWAY)
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
        """A new download work package for ``files`` (accession -> extension)."""
        dotted = {accession: _dotted(ext) for accession, ext in files.items()}
        return self._store(dotted, user_public_key, valid_seconds, DOWNLOAD)

    def mint_upload(
        self, user_public_key: bytes, *, valid_seconds: float = WORK_PACKAGE_VALID_DAYS * 86400
    ) -> MintedWorkPackage:
        """Test hook: an *upload* work package (no files), whose download token a user
        might paste by mistake; the WPS refuses download work order tokens for it."""
        return self._store({}, user_public_key, valid_seconds, UPLOAD)

    def _store(
        self, files: dict[str, str], user_public_key: bytes, valid_seconds: float, work_type: str
    ) -> MintedWorkPackage:
        package_id = str(uuid.uuid4())
        alphabet = string.ascii_letters + string.digits
        access_token = "".join(secrets.choice(alphabet) for _ in range(ACCESS_TOKEN_LENGTH))
        now = self._clock()
        stored = _StoredPackage(
            token_sha256=hashlib.sha256(access_token.encode()).hexdigest(),
            files=files,
            user_public_key=bytes(user_public_key),
            created=now,
            expires=now + valid_seconds,
            work_type=work_type,
            upload_box_ids=(str(uuid.uuid4()), str(uuid.uuid4())) if work_type == UPLOAD else None,
        )
        download_token = f"{package_id}:{seal(access_token, user_public_key)}"
        with self._lock:
            self._packages[package_id] = stored
            self.issued_secrets += [download_token, access_token]
        return MintedWorkPackage(package_id, download_token, access_token)

    # --- test hooks -------------------------------------------------------------------------

    def withdraw_file(self, package_id: str, accession: str) -> None:
        """Take a file out of a package: its WOTs get ``File is not contained ...``."""
        with self._lock:
            del self._packages[package_id].files[accession]

    def revoke(self, package_id: str) -> None:
        """The user's access was revoked: every call for the package gets
        ``Download access has been revoked``."""
        with self._lock:
            self._packages[package_id].revoked = True

    def make_unavailable(self, accession: str) -> None:
        """The WPS knows no file ID for ``accession`` (in any package): its work order
        token requests get ``File not available for download``."""
        with self._lock:
            self._unavailable.add(accession)

    def expire_next_work_order_tokens(
        self, count: float = 1, *, expired_for: float = EXPIRED_BEYOND_LEEWAY
    ) -> None:
        """The next ``count`` WOTs (``math.inf``: all) are issued with an ``exp`` that
        passed ``expired_for`` seconds ago. The default lies beyond the DCS's leeway, so
        the DCS refuses them; less than :data:`WORK_ORDER_TOKEN_LEEWAY` it accepts them."""
        with self._lock:
            self._expire_next = count
            self._expired_for = expired_for

    # --- P1 and P2 ------------------------------------------------------------------------

    def get_work_package(self, request: Request, package_id: str) -> Response:
        """The work package's details, for the holder of its access token."""
        found = self._authorized_package(request, package_id)
        if isinstance(found, Response):
            return found
        rdub_id, file_box_id = found.upload_box_ids or (None, None)
        return json_response(
            200,
            {  # the WPS's WorkPackageDetails, fields in its order
                "type": found.work_type,
                "files": dict(found.files),
                "research_data_upload_box_id": rdub_id,
                "file_upload_box_id": file_box_id,
                "created": _iso(found.created),
                "expires": _iso(found.expires),
            },
        )

    def create_work_order_token(
        self, request: Request, package_id: str, accession: str
    ) -> Response:
        """A WOT for one file, sealed to the package's user key; 201 with a JSON string."""
        found = self._authorized_package(request, package_id)
        if isinstance(found, Response):
            return found
        refusal = self._work_order_refusal(found, accession)
        if refusal is not None:
            return forbidden(refusal)
        token = self.signer.sign(self._claims(accession, found.user_public_key))
        sealed = seal(token, found.user_public_key)
        with self._lock:
            self.issued_secrets += [token, sealed]
        response = json_response(201, sealed, headers=[("Cache-Control", "max-age=30, private")])
        response.file_id = accession
        return response

    def _work_order_refusal(self, package: _StoredPackage, accession: str) -> str | None:
        """Why the WPS will not issue a download WOT for ``accession`` (its order), or None."""
        if package.work_type != DOWNLOAD:
            return "Work package type must be DOWNLOAD to obtain a download access WOT"
        if accession not in package.files:
            return "File is not contained in work package"
        with self._lock:
            if accession in self._unavailable:
                return "File not available for download"
        return None

    def _authorized_package(self, request: Request, package_id: str) -> _StoredPackage | Response:
        """The package, or the WPS's 401/422/403 answer (checks in the WPS's order)."""
        token = request.bearer_token
        if token is None:
            return not_authenticated()
        parsed = uuid4_or_error(package_id, "work_package_id")
        if isinstance(parsed, Response):
            return parsed
        with self._lock:
            stored = self._packages.get(str(parsed))
        if stored is None:
            return forbidden("Work package not found")
        refusal = self._package_refusal(stored, token)
        return stored if refusal is None else forbidden(refusal)

    def _package_refusal(self, stored: _StoredPackage, token: str) -> str | None:
        if not secrets.compare_digest(
            hashlib.sha256(token.encode()).hexdigest(), stored.token_sha256
        ):
            return "Invalid work package access token"
        if not stored.created <= self._clock() < stored.expires:
            return "Work package has expired"
        if stored.revoked:
            return f"{stored.work_type.title()} access has been revoked"
        return None

    def _claims(self, accession: str, user_public_key: bytes) -> dict[str, Any]:
        issued_at = int(self._clock())
        lifetime = int(self.work_order_token_lifetime)
        with self._lock:
            if self._expire_next > 0:
                self._expire_next -= 1
                # Issued long enough ago that exp lies expired_for seconds in the past.
                issued_at -= lifetime + round(self._expired_for)
        key = self.claimed_user_key or user_public_key
        return {
            "work_type": DOWNLOAD,
            "file_id": internal_file_id(accession),
            "accession": accession,
            "user_public_crypt4gh_key": base64.b64encode(key).decode(),
            "iat": issued_at,
            "exp": issued_at + lifetime,
        }


def _dotted(extension: str) -> str:
    extension = extension.strip()
    return extension if not extension or extension.startswith(".") else f".{extension}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def files_of(specs: Iterable[Any]) -> dict[str, str]:
    """accession -> extension for sandbox file specs (anything with file_id, extension)."""
    return {spec.file_id: spec.extension for spec in specs}
