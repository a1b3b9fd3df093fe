"""Crypt4GH public keys: parsing the forms users and services hand us, and comparing them.

A Crypt4GH public key is 32 raw X25519 bytes. It travels as standard base64 of those
bytes (GHGA's APIs, our env vars) or as the armored text ``crypt4gh-keygen`` writes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from pathlib import Path

from crypt4gh.keys import get_public_key

from .errors import ConfigurationError, PublicKeyMismatch

KEY_LENGTH = 32
_ARMOR_PREFIX = "-----BEGIN "


def parse_public_key(text: str, *, setting: str) -> bytes:
    """Decode base64 or armored key text into the 32 raw key bytes.

    ``setting`` names where the text came from, so the error tells the user what to fix.
    """
    text = text.strip()
    if text.startswith(_ARMOR_PREFIX):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) < 3 or not lines[-1].startswith("-----END "):
            raise ConfigurationError(setting=setting, problem="armored key has no END line")
        text = "".join(lines[1:-1])
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(setting=setting, problem="not base64 key text") from None
    if len(key) != KEY_LENGTH:
        raise ConfigurationError(
            setting=setting, problem=f"a public key has {KEY_LENGTH} bytes, this one {len(key)}"
        )
    return key


def encode_public_key(key: bytes) -> str:
    """The standard base64 form GHGA's APIs use."""
    return base64.b64encode(key).decode("ascii")


def read_public_key_file(path: Path, *, setting: str = "user_public_key") -> bytes:
    """Load the user's own public key file (Crypt4GH armored or OpenSSH ed25519)."""
    if not path.is_file():
        raise ConfigurationError(setting=setting, problem=f"no key file at {path}")
    try:
        key = bytes(get_public_key(str(path)))
    except (ValueError, NotImplementedError, binascii.Error) as error:
        raise ConfigurationError(
            setting=setting, problem=f"{path} is not a Crypt4GH public key ({error})"
        ) from None
    if len(key) != KEY_LENGTH:
        raise ConfigurationError(setting=setting, problem=f"{path} does not hold a 32-byte key")
    return key


def check_public_key(key_file: Path, archive_copy: bytes) -> None:
    """Stop unless the user's key file holds the key the work package was made for.

    Envelopes are encrypted to the archive's copy; a different local key would download
    files the user can never decrypt, so we refuse before any download.
    """
    own_key = read_public_key_file(key_file)
    if not hmac.compare_digest(own_key, archive_copy):
        raise PublicKeyMismatch(key_file=str(key_file))
