"""GHGA's tokens on the client side: the pasted download token, sealed boxes, WOT claims.

    download token   "<work package id>:<base64 SealedBox(access token)>"
    access token     24 characters; opens the work package at the WPS
    work order token a sealed ES256 JWT per file and Download API call, ~30 s life

(docs/protocol.md, "Tokens".)

Design notes:

- Nothing here logs, formats or repr()s a token. Errors say *what* is wrong with a
  token ("not base64", "wrong key pair"), never echo it, because error messages end up
  in Snakemake logs and the report.
- WOT claims are read without checking the signature: the client has no key to check
  it with, and the Download API does check it. We read them for one reason: to compare
  ``user_public_crypt4gh_key`` with the user's own key file. JWT segments are
  base64url *without padding*; the official client decodes them as standard base64
  without restoring the padding, which fails almost always and silently skips its
  check. Here padding is restored and a failure to decode is an error.
- crypt4gh's private-key reader calls ``sys.exit`` on a wrong passphrase and logs
  derived key material at DEBUG level; :func:`read_private_key` contains both.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypt4gh.keys import get_private_key
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from .errors import ConfigurationError
from .keys import KEY_LENGTH, parse_public_key

# Shape limits of the pasted token, as the official client enforces them (docs/protocol.md).
WORK_PACKAGE_ID_LENGTH = range(20, 40)
SEALED_TOKEN_LENGTH = range(80, 120)
_CRYPT4GH_KEY_LOGGERS = ("crypt4gh.keys", "crypt4gh.keys.c4gh", "crypt4gh.keys.kdf")


class SealedBoxError(ValueError):
    """A sealed token could not be opened (not base64, or sealed to another key)."""


class ClaimsError(ValueError):
    """A work order token is not a JWT with the claims we need."""


@dataclass(frozen=True)
class DownloadToken:
    """The token the data portal shows: which work package, and its sealed access token."""

    work_package_id: str
    sealed_access_token: str = field(repr=False)


@dataclass(frozen=True)
class WorkOrderClaims:
    """What a work order token says about itself (unverified; the DCS verifies)."""

    user_public_key: bytes  # the archive's copy of the user's key: envelopes go to it
    accession: str | None  # the file it is for; older servers put it in ``file_id``
    issued_at: float
    expires_at: float

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at


def parse_download_token(text: str, *, source: str) -> DownloadToken:
    """Check the shape of a pasted download token; ``source`` names where it came from."""
    parts = text.strip().split(":")
    if len(parts) != 2:
        raise _bad_token(source, "expected '<work package id>:<encrypted token>' (one ':')")
    package_id, sealed = parts
    if len(package_id) not in WORK_PACKAGE_ID_LENGTH or len(sealed) not in SEALED_TOKEN_LENGTH:
        raise _bad_token(source, "the parts have the wrong length; copy the whole token again")
    try:
        package_id = str(uuid.UUID(package_id))
    except ValueError:
        raise _bad_token(source, "the part before ':' is not a work package ID") from None
    try:
        base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_token(source, "the part after ':' is not base64") from None
    return DownloadToken(package_id, sealed)


def _bad_token(source: str, problem: str) -> ConfigurationError:
    return ConfigurationError(setting=source, problem=f"is not a GHGA download token: {problem}")


def open_sealed(sealed_base64: str, private_key: bytes) -> str:
    """Open a base64 NaCl SealedBox with the user's raw X25519 private key (docs/protocol.md)."""
    try:
        sealed = base64.b64decode(sealed_base64, validate=True)
    except (binascii.Error, ValueError):
        raise SealedBoxError("not base64") from None
    try:
        return SealedBox(PrivateKey(private_key)).decrypt(sealed).decode("utf-8")
    except CryptoError:
        raise SealedBoxError("sealed to another key") from None
    except UnicodeDecodeError:
        raise SealedBoxError("does not hold text") from None


def decode_base64url(segment: str) -> bytes:
    """base64url as JWTs use it: no padding on the wire, so restore it before decoding."""
    padded = segment + "=" * (-len(segment) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def read_work_order_claims(token: str) -> WorkOrderClaims:
    """The claims of a compact JWT, without verifying its signature (see module notes)."""
    segments = token.split(".")
    if len(segments) != 3:
        raise ClaimsError(f"has {len(segments)} segments, a JWT has 3")
    try:
        claims = json.loads(decode_base64url(segments[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ClaimsError("claims are not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ClaimsError("claims are not a JSON object")
    return WorkOrderClaims(
        user_public_key=_claimed_key(claims),
        accession=_claimed_accession(claims),
        issued_at=_number_claim(claims, "iat"),
        expires_at=_number_claim(claims, "exp"),
    )


def _claimed_key(claims: dict[str, Any]) -> bytes:
    value = claims.get("user_public_crypt4gh_key")
    if not isinstance(value, str):
        raise ClaimsError("has no user_public_crypt4gh_key claim")
    try:
        return parse_public_key(value, setting="user_public_crypt4gh_key")
    except ConfigurationError as error:
        raise ClaimsError(f"user_public_crypt4gh_key: {error.problem}") from None


def _claimed_accession(claims: dict[str, Any]) -> str | None:
    # Servers before 2026 had no "accession" claim: nothing to compare.
    accession = claims.get("accession")
    return accession if isinstance(accession, str) else None


def _number_claim(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimsError(f"has no numeric {name} claim")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float (found by test_properties.py)
        raise ClaimsError(f"the {name} claim is out of range") from None


def read_private_key(
    path: Path, ask_passphrase: Callable[[], str] | None, *, setting: str
) -> bytes:
    """The raw 32-byte private key from a Crypt4GH (or OpenSSH ed25519) key file.

    ``ask_passphrase`` is called only for a passphrase-protected key; without one, such a
    key is a configuration error that says how to supply the passphrase.
    """
    if not path.is_file():
        raise ConfigurationError(setting=setting, problem=f"no key file at {path}")
    _drop_crypt4gh_key_debug_logs()
    asked = False

    def passphrase() -> str:
        nonlocal asked
        asked = True
        if ask_passphrase is None:
            raise _NoPassphrase
        return ask_passphrase()

    try:
        # crypt4gh prints "Invalid Key or Passphrase" and calls sys.exit(2) on a wrong one.
        with contextlib.redirect_stderr(io.StringIO()):
            key = bytes(get_private_key(str(path), passphrase))
    except _NoPassphrase:
        raise ConfigurationError(
            setting=setting,
            problem=f"{path} is passphrase-protected; set GHGA_KEY_PASSPHRASE to unlock it",
        ) from None
    except (SystemExit, ValueError, NotImplementedError, binascii.Error):
        problem = "wrong passphrase" if asked else "not a Crypt4GH private key file"
        raise ConfigurationError(
            setting=setting, problem=f"cannot read {path}: {problem}"
        ) from None
    if len(key) != KEY_LENGTH:
        raise ConfigurationError(setting=setting, problem=f"{path} does not hold a 32-byte key")
    return key


class _NoPassphrase(BaseException):
    """Raised inside crypt4gh's callback when nobody can supply a passphrase.

    A BaseException on purpose: crypt4gh turns every Exception there into sys.exit(2).
    """


class _DropDebugRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _drop_crypt4gh_key_debug_logs() -> None:
    """crypt4gh logs derived key bytes at DEBUG level; never let them through (idempotent)."""
    for name in _CRYPT4GH_KEY_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropDebugRecords) for f in target.filters):
            target.addFilter(_DropDebugRecords())
