"""Decrypting downloaded ``.c4gh`` files and checking them against the archive's checksum.

The archive's SHA-256 of each decrypted file comes with the DRS object; the download
records it in ``ghga_report.tsv`` (and the plan), so decryption can prove the plaintext
is exactly what GHGA holds. Output is written to ``<name>.part`` and renamed when the
checksum matches (or none is known). An existing output that already matches the
archive's checksum is left as it is (a second run has nothing to do); any other existing
output is replaced only when asked, and only by a verified new one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from crypt4gh import lib

from . import shutdown, state
from .errors import GhgaTasksError, IntegrityError, Interrupted, OutputExists
from .plan import PLAN_FILE
from .report import REPORT_FILE
from .settings import Settings
from .state import file_sha256
from .tokens import read_private_key
from .work_package import C4GH_SUFFIX, PART_SUFFIX
from .wps import private_key_for_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecryptResult:
    source: Path
    output: Path
    sha256: str
    verified: bool  # False when the archive's checksum is unknown
    already_there: bool = False  # the output existed and matched: nothing was written


def load_private_key(path: Path, ask_passphrase: Callable[[], str]) -> bytes:
    """Read a Crypt4GH private key; ``ask_passphrase`` is only called for a locked key."""
    return read_private_key(path, ask_passphrase, setting="private key")


def decrypt_downloaded(
    settings: Settings, file_name: str, environ: Mapping[str, str] | None = None
) -> DecryptResult:
    """The workflow's ``decrypt_file`` job: ``<output_dir>/<file_name>`` (a finished
    download) to ``<decrypted_dir>/<name>``, checked against the archive's checksum the
    download recorded, and vouched for in the state records (see ``state``). A failure
    is recorded for the summary."""
    state.clear_failure(settings.output_dir, file_name, state.DECRYPT_STEP)
    try:
        return _decrypt_downloaded(settings, file_name, environ)
    except GhgaTasksError as error:
        state.record_failure(settings.output_dir, file_name, error, state.DECRYPT_STEP)
        raise
    except KeyboardInterrupt:
        state.record_failure(settings.output_dir, file_name, Interrupted(), state.DECRYPT_STEP)
        raise


def _decrypt_downloaded(
    settings: Settings, file_name: str, environ: Mapping[str, str] | None
) -> DecryptResult:
    record = state.read_result(settings.output_dir, file_name) or {}
    expected = record.get("content_sha256") or None
    if expected is None and not settings.keep_encrypted:
        raise IntegrityError(
            file_id=file_name,
            problem="no archive checksum to verify the decrypted file against, so the "
            ".c4gh must stay: set keep_encrypted: true",
        )
    if expected is None:
        log.warning("%s: no archive checksum known; decrypting without verifying", file_name)
    key = private_key_for_tokens(settings, os.environ if environ is None else environ)
    settings.decrypted_dir.mkdir(parents=True, exist_ok=True)
    result = decrypt_file(
        settings.output_dir / file_name, settings.decrypted_dir, key, expected, overwrite=True
    )
    state.record_decrypted(settings.output_dir, file_name, result.output, result.sha256)
    log.info("%s: decrypted to %s (%s)", file_name, result.output, _verdict(result))
    return result


def _verdict(result: DecryptResult) -> str:
    return "verified against the archive's SHA-256" if result.verified else "not verified"


def known_checksums(input_dir: Path) -> dict[str, str]:
    """Archive checksums by ``.c4gh`` file name, from the report or else the plan."""
    for name, column in ((REPORT_FILE, "content_sha256"), (PLAN_FILE, "sha256")):
        path = input_dir / name
        if path.is_file():
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
            if column in frame and "file_name" in frame:
                return {n: c for n, c in zip(frame["file_name"], frame[column], strict=True) if c}
    return {}


def encrypted_files(input_dir: Path) -> list[Path]:
    """Every finished download: ``*.c4gh`` files, never ``*.c4gh.part``."""
    return sorted(p for p in input_dir.iterdir() if p.is_file() and p.name.endswith(C4GH_SUFFIX))


def decrypt_file(
    source: Path,
    output_dir: Path,
    private_key: bytes,
    expected_sha256: str | None,
    *,
    overwrite: bool = False,
) -> DecryptResult:
    """Decrypt one file to ``output_dir/<name without .c4gh>``; verify when we can."""
    output = output_dir / source.name.removesuffix(C4GH_SUFFIX)
    if output.exists() and not overwrite:
        return _already_decrypted(source, output, expected_sha256)
    part = output.with_name(output.name + PART_SUFFIX)
    try:
        with source.open("rb") as infile, part.open("wb") as outfile:
            digest = _decrypt_stream(infile, outfile, private_key, source)
            outfile.flush()
            os.fsync(outfile.fileno())  # durable before it gets the final name
        if expected_sha256 and digest != expected_sha256:
            raise IntegrityError(
                file_id=source.name,
                problem=f"decrypted SHA-256 {digest} is not the archive's {expected_sha256}",
            )
        os.replace(part, output)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    log.debug(
        "%s -> %s (%s)",
        source.name,
        output.name,
        "verified" if expected_sha256 else "no archive checksum to verify against",
    )
    return DecryptResult(source, output, digest, bool(expected_sha256))


def _already_decrypted(source: Path, output: Path, expected_sha256: str | None) -> DecryptResult:
    """An existing output is fine when it is the archive's content; else say what to do."""
    if not expected_sha256:
        raise OutputExists(
            path=str(output),
            hint="no archive checksum to tell whether it is this file's content; "
            "pass --overwrite to decrypt it again",
        )
    if file_sha256(output) != expected_sha256:
        raise OutputExists(
            path=str(output),
            hint="its content is not the archive's; pass --overwrite to replace it",
        )
    return DecryptResult(source, output, expected_sha256, verified=True, already_there=True)


class _HashingWriter:
    """Passes writes through to a file and hashes them on the way."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        shutdown.check()  # a thread of Snakemake sees Ctrl-C only this way
        self.digest.update(data)
        return self.stream.write(data)


def _decrypt_stream(infile: BinaryIO, outfile: BinaryIO, private_key: bytes, source: Path) -> str:
    writer = _HashingWriter(outfile)
    try:
        lib.decrypt([(0, private_key, None)], infile, writer)
    except (ValueError, OSError) as error:
        raise IntegrityError(file_id=source.name, problem=f"cannot decrypt ({error})") from None
    return writer.digest.hexdigest()
