"""Checking the personalised Crypt4GH envelope before it goes to disk.

Layout (ghga-protocol.md §4.1): magic ``crypt4gh`` (8) | version 1 (u32 LE) |
packet count 1 (u32 LE) | packet length (u32 LE) | method 0 (u32 LE) |
writer public key (32) | nonce (12) | encrypted payload | MAC (16).

The writer key is the reason we hold GHGA's public key at all: an envelope written by
anyone else is refused, so a spoofed server cannot hand us a file key it controls.
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


def check_envelope(envelope: bytes, *, ghga_public_key: bytes, file_id: str) -> bytes:
    """Return the envelope unchanged if it is a one-packet Crypt4GH v1 header from GHGA."""
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
    key_start = _PREFIX.size + _PACKET_HEAD.size
    writer_key = envelope[key_start : key_start + _WRITER_KEY_LENGTH]
    if not hmac.compare_digest(writer_key, ghga_public_key):
        raise EnvelopeRejected(file_id=file_id, problem="not written with GHGA's public key")
    return envelope
