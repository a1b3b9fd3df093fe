"""The sandbox's archive content: file specs, generated objects and envelopes.

Design notes:

- Each available file becomes two files on disk: the plaintext (kept so tests can compare
  bytes; random, or typed content from ``content``) and the outbox object, i.e.
  header-less Crypt4GH data segments under a fresh 32-byte session key, exactly what the
  GHGA outbox holds (docs/protocol.md, "Objects and sizes").
- Generation streams in 1 MiB chunks, so a 256 MiB file costs a few seconds and a few MiB
  of memory, never the file size.
- The envelope is made per request for the requesting user's key, as the EKSS does
  (docs/protocol.md, "Envelope"); the session key never leaves this process.
- crypt4gh logs secret keys at DEBUG level; :func:`guard_crypt4gh_key_logs` drops those
  records so a ``--debug`` run never writes key material.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from crypt4gh import header, sodium

from ghga_tasks.sandbox.content import content_chunks, random_chunks

logger = logging.getLogger(__name__)

SEGMENT_SIZE = 65_536
CIPHER_OVERHEAD = 28  # 12-byte nonce + 16-byte Poly1305 tag per segment
CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + CIPHER_OVERHEAD
ENVELOPE_SIZE = 124
KEY_SIZE = 32
_SEGMENTS_PER_CHUNK = 16  # 1 MiB of plaintext per write
_CHUNK_SIZE = SEGMENT_SIZE * _SEGMENTS_PER_CHUNK
_FORBIDDEN_IN_ID = re.compile(r"[\s,/?#]")
_KEY_LOGGERS = ("crypt4gh.header", "crypt4gh.lib", "crypt4gh.keys.c4gh")


@dataclass(frozen=True)
class SandboxFile:
    """One file of the sandbox's work package, as the scenario describes it.

    ``stage_seconds``: 0 means in the outbox at once; > 0 means the first DRS probe
    answers 202 and starts a timer, and the file is staged that many seconds later;
    ``math.inf`` means it never gets staged. ``available=False`` makes the DCS answer
    404 ``noSuchObject`` (a file listed in the package but not in the archive).
    ``realistic=True`` makes ``.fastq.gz``, ``.vcf.gz`` and ``.bam`` content what those
    names promise (``content``), at the same exact size; otherwise it is random bytes.
    """

    file_id: str
    extension: str = ""
    size: int = 100_000
    stage_seconds: float = 0
    available: bool = True
    realistic: bool = False

    def __post_init__(self) -> None:
        if not self.file_id or _FORBIDDEN_IN_ID.search(self.file_id):
            raise ValueError(f"invalid sandbox file ID {self.file_id!r}")
        if "," in self.extension or "/" in self.extension:
            raise ValueError(f"invalid extension {self.extension!r} for {self.file_id}")
        if self.size < 0:
            raise ValueError(f"negative size for {self.file_id}")
        if math.isnan(self.stage_seconds) or self.stage_seconds < 0:
            raise ValueError(f"stage_seconds must be >= 0 for {self.file_id}")


@dataclass(frozen=True)
class StoredFile:
    """A generated file: where its bytes are and what the DCS says about it."""

    spec: SandboxFile
    object_id: str  # UUID4 of the outbox object; the accession never appears in S3 URLs
    plaintext_path: Path
    object_path: Path
    sha256: str  # of the plaintext, as the DRS checksum
    encrypted_size: int
    created_time: str
    session_key: bytes = field(repr=False)


def encrypted_size(plaintext_size: int) -> int:
    """Size of the header-less segment stream for ``plaintext_size`` bytes (docs/protocol.md)."""
    full, rest = divmod(plaintext_size, SEGMENT_SIZE)
    return full * CIPHER_SEGMENT_SIZE + (rest + CIPHER_OVERHEAD if rest else 0)


def generate_secret_key() -> bytes:
    """A fresh X25519 secret key (Crypt4GH keys are raw 32-byte X25519 keys)."""
    return os.urandom(KEY_SIZE)


def public_key_of(secret_key: bytes) -> bytes:
    """The X25519 public key belonging to ``secret_key``."""
    return bytes(sodium.derive_pk(secret_key))


def store_file(spec: SandboxFile, directory: Path) -> StoredFile:
    """Generate random plaintext for ``spec`` and its outbox object under ``directory``."""
    plain_dir, outbox_dir = directory / "plaintext", directory / "outbox"
    plain_dir.mkdir(parents=True, exist_ok=True)
    outbox_dir.mkdir(parents=True, exist_ok=True)
    object_id = str(uuid.uuid4())
    session_key = os.urandom(KEY_SIZE)
    plaintext_path = plain_dir / f"{spec.file_id}{spec.extension}"
    object_path = outbox_dir / object_id
    content = content_chunks(spec.extension, spec.size) if spec.realistic else None
    sha256 = _write_plain_and_sealed(
        content or random_chunks(spec.size), plaintext_path, object_path, session_key
    )
    size = object_path.stat().st_size
    expected = encrypted_size(spec.size)
    if size != expected:  # a broken generator must not pass silently
        raise RuntimeError(f"object for {spec.file_id} has {size} bytes, expected {expected}")
    logger.debug("Generated %s: %d plaintext bytes, %d encrypted", spec.file_id, spec.size, size)
    return StoredFile(
        spec=spec,
        object_id=object_id,
        plaintext_path=plaintext_path,
        object_path=object_path,
        sha256=sha256,
        encrypted_size=size,
        created_time=datetime.now(UTC).isoformat(),
        session_key=session_key,
    )


def _write_plain_and_sealed(
    content: Iterator[bytes], plain_path: Path, sealed_path: Path, key: bytes
) -> str:
    """Write ``content`` and its segment encryption; return the plaintext's SHA-256 hex."""
    digest = hashlib.sha256()
    sealed_buffer = memoryview(bytearray(_SEGMENTS_PER_CHUNK * CIPHER_SEGMENT_SIZE))
    with plain_path.open("wb") as plain, sealed_path.open("wb") as sealed:
        for chunk in _rechunked(content, _CHUNK_SIZE):
            digest.update(chunk)
            plain.write(chunk)
            sealed.write(sealed_buffer[: _encrypt_segments(chunk, key, sealed_buffer)])
    return digest.hexdigest()


def _rechunked(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in chunks of exactly ``size`` (the last may be shorter): segments
    must be full 64 KiB except the very last one."""
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) == size:
            yield piece  # random content comes in chunks of this size already: no copy
            continue
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _encrypt_segments(chunk: bytes, key: bytes, out: memoryview) -> int:
    """Encrypt ``chunk`` segment by segment into ``out``; return the bytes written.

    ``chacha20poly1305_encrypt`` draws a random nonce and writes nonce ‖ ciphertext ‖ tag.
    """
    plain = memoryview(chunk)
    written = 0
    for start in range(0, len(chunk), SEGMENT_SIZE):
        segment = plain[start : start + SEGMENT_SIZE]
        target = out[written : written + len(segment) + CIPHER_OVERHEAD]
        written += sodium.chacha20poly1305_encrypt(target, segment, key)
    return written


def make_envelope(session_key: bytes, ghga_secret_key: bytes, user_public_key: bytes) -> bytes:
    """The 124-byte Crypt4GH header that gives ``user_public_key`` the file's session key."""
    guard_crypt4gh_key_logs()
    packet = header.make_packet_data_enc(0, session_key)
    packets = header.encrypt(packet, [(0, ghga_secret_key, user_public_key)])
    envelope = bytes(header.serialize(packets))
    if len(envelope) != ENVELOPE_SIZE:
        raise RuntimeError(f"envelope has {len(envelope)} bytes, expected {ENVELOPE_SIZE}")
    return envelope


class _DropDebugRecords(logging.Filter):
    """Drops crypt4gh's DEBUG records: they contain secret and session keys in hex."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def guard_crypt4gh_key_logs() -> None:
    """Make sure crypt4gh's key-revealing DEBUG logs are never emitted (idempotent)."""
    for name in _KEY_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropDebugRecords) for f in target.filters):
            target.addFilter(_DropDebugRecords())
