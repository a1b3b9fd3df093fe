"""Checking the personalised Crypt4GH envelope before it goes to disk.

Layout (docs/protocol.md, "Envelope"): magic ``crypt4gh`` (8) | version 1 (u32 LE) |
packet count 1 (u32 LE) | packet length (u32 LE) | method 0 (u32 LE) |
writer public key (32) | nonce (12) | encrypted payload | MAC (16).

Who wrote it: GHGA's key service writes every envelope with GHGA's *central* key, which
GHGA does not publish (the well-known ``crypt4gh_public_keys`` are the data hubs' upload
keys, never the writer). So the writer key is read and recorded (report column
``envelope_writer_key``) and compared only with a key the user gave explicitly
(``GHGA_PUBLIC_KEY`` in env mode, the ``ghga_public_key`` config key in wps mode). What
proves the bytes right is the decrypted content's SHA-256 (``verify: true``, ``decrypt``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import struct

from .errors import EnvelopeRejected

MAGIC = b"crypt4gh"
VERSION = 1
_PREFIX = struct.Struct("<8sII")  # magic, version, packet count
_PACKET_HEAD = struct.Struct("<II")  # packet length (incl. itself), encryption method
_WRITER_KEY_LENGTH = 32


def decode_envelope_body(body: bytes, *, file_id: str) -> bytes:
    """The DCS sends a JSON string of base64; older servers sent bare base64. Accept both."""
    text = body.decode("ascii", errors="replace").strip()
    if text.startswith('"'):
        try:
            text = json.loads(text)
        except json.JSONDecodeError:
            raise EnvelopeRejected(file_id=file_id, problem="body is not a JSON string") from None
    if not isinstance(text, str):
        raise EnvelopeRejected(file_id=file_id, problem="body is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeRejected(file_id=file_id, problem="body is not base64") from None


def check_envelope(envelope: bytes, *, file_id: str) -> bytes:
    """Return the envelope unchanged if it is a well-formed one-packet Crypt4GH v1 header."""
    if len(envelope) < _PREFIX.size + _PACKET_HEAD.size + _WRITER_KEY_LENGTH:
        raise EnvelopeRejected(file_id=file_id, problem=f"only {len(envelope)} bytes")
    magic, version, packets = _PREFIX.unpack_from(envelope)
    if magic != MAGIC:
        raise EnvelopeRejected(file_id=file_id, problem="no Crypt4GH magic")
    if version != VERSION:
        raise EnvelopeRejected(file_id=file_id, problem=f"Crypt4GH version {version}")
    if packets != 1:
        raise EnvelopeRejected(file_id=file_id, problem=f"{packets} header packets, expected 1")
    packet_length, method = _PACKET_HEAD.unpack_from(envelope, _PREFIX.size)
    if _PREFIX.size + packet_length != len(envelope):
        raise EnvelopeRejected(file_id=file_id, problem="packet length does not match the body")
    if method != 0:
        raise EnvelopeRejected(file_id=file_id, problem=f"encryption method {method}")
    return envelope


def writer_key(envelope: bytes) -> bytes:
    """The public key the envelope was written with (of a checked envelope)."""
    start = _PREFIX.size + _PACKET_HEAD.size
    return envelope[start : start + _WRITER_KEY_LENGTH]


def check_writer(envelope: bytes, expected: bytes | None, *, setting: str, file_id: str) -> bytes:
    """The envelope's writer key; if the user gave GHGA's key (``expected``), it must be it.

    ``setting`` names where the expected key came from, for the message.
    """
    writer = writer_key(envelope)
    if expected is not None and not hmac.compare_digest(writer, expected):
        raise EnvelopeRejected(
            file_id=file_id,
            problem=f"written with key {b64(writer)}, not with GHGA's key {b64(expected)} "
            f"({setting}); check that {setting} is GHGA's current public key",
        )
    return writer


def b64(key: bytes) -> str:
    """A key as users see it in key files and environment variables."""
    return base64.b64encode(key).decode("ascii")
