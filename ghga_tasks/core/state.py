"""What ghga-tasks keeps about an output directory, under ``<output_dir>/.ghga_tasks/``.

    settings.json              the settings the plan step resolved; download jobs use them
    results/<file_name>.json   one per file ghga-tasks completed: size, SHA-256, mtime, ...
    failures/<file_name>.json  one per file whose last attempt failed: message, exit code
    failures/decrypt/...       the same for decrypt_file jobs
    decrypted/<file_name>.json one per verified decrypted copy: its path, size, SHA-256

A result record is how ghga-tasks vouches for a file: it wrote it, and the file still has
the size and modification time the record holds. Then it is a finished download, whatever
run wrote it: a re-run or a changed setting never cancels because of it, never downloads it
again, and the report carries its checksums forward without reading the file again. A file
under a final name without such a record (the user's own, or one changed since) is only
*present*: nothing vouches for its bytes.

The modification time is the record's weak spot: Snakemake touches every output after its
job, so the time a download job records is stale a moment later. The report step, which
runs right after the downloads, *seals* the records with the times then on disk. A record
whose time no longer matches (not sealed, or the file was touched) is checked the slow way
once: the file's SHA-256 against the record's, and sealed anew if they agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, GhgaTasksError
from .settings import Settings

log = logging.getLogger(__name__)

STATE_DIR = ".ghga_tasks"
DOWNLOAD_STEP, DECRYPT_STEP = "download", "decrypt"  # the jobs that record failures
SETTINGS_FILE = "settings.json"
HASH_READ_SIZE = 4 * 1024 * 1024


def settings_path(output_dir: Path) -> Path:
    return output_dir / STATE_DIR / SETTINGS_FILE


def result_path(output_dir: Path, file_name: str) -> Path:
    return output_dir / STATE_DIR / "results" / f"{file_name}.json"


def decrypted_path(output_dir: Path, file_name: str) -> Path:
    return output_dir / STATE_DIR / "decrypted" / f"{file_name}.json"


def failure_path(output_dir: Path, file_name: str, step: str = DOWNLOAD_STEP) -> Path:
    """Why the last ``step`` ("download" or "decrypt") of ``file_name`` failed."""
    failures = output_dir / STATE_DIR / "failures"
    return (failures if step == DOWNLOAD_STEP else failures / step) / f"{file_name}.json"


def save_settings(settings: Settings) -> None:
    _write_json(settings_path(settings.output_dir), json.loads(settings.to_json()))


def load_settings(path: Path) -> Settings:
    try:
        return Settings.from_mapping(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise ConfigurationError(setting=str(path), problem=f"unreadable ({error})") from None


def record_result(output_dir: Path, file_name: str, result: dict[str, Any]) -> None:
    """Vouch for a completed file (``result`` holds at least ``bytes`` and ``mtime_ns``)."""
    _write_json(result_path(output_dir, file_name), result)


def read_result(output_dir: Path, file_name: str) -> dict[str, Any] | None:
    return _read_json(result_path(output_dir, file_name))


def record_failure(
    output_dir: Path, file_name: str, error: GhgaTasksError, step: str = DOWNLOAD_STEP
) -> None:
    """Keep why a download (or decryption) failed, for the report and the exit code.

    Not a declared Snakemake output: Snakemake deletes those when a job fails. Best
    effort: when the record cannot be written (the disk that just filled up), the
    download's own error is still the one the user sees; the summary then says only that
    the file was not downloaded.
    """
    record = {"file_name": file_name, "exit_code": error.exit_code, "error": str(error)}
    path = failure_path(output_dir, file_name, step)
    try:
        _write_json(path, record)
    except OSError as write_error:
        log.warning("%s: could not record why it failed (%s)", file_name, write_error)
        with contextlib.suppress(OSError):
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)


def clear_failure(output_dir: Path, file_name: str, step: str = DOWNLOAD_STEP) -> None:
    failure_path(output_dir, file_name, step).unlink(missing_ok=True)


def read_failure(
    output_dir: Path, file_name: str, step: str = DOWNLOAD_STEP
) -> dict[str, Any] | None:
    return _read_json(failure_path(output_dir, file_name, step))


@dataclass(frozen=True)
class Existing:
    """A file under its final name, and whether ghga-tasks vouches for it."""

    size: int
    result: dict[str, Any] | None  # the record that still matches the file, if any
    why_not: str = ""  # why nothing vouches for it

    @property
    def vouched(self) -> bool:
        return self.result is not None


def existing_file(output_dir: Path, file_name: str) -> Existing | None:
    """What is under ``file_name`` now (None: nothing), and whether its record vouches for
    it. The file is read only when its time no longer matches the record's.

    A ``.c4gh`` removed after its decryption was verified (``keep_encrypted: false``)
    still counts as finished while its decrypted copy is unchanged."""
    path = output_dir / file_name
    try:
        stat = path.stat()
    except FileNotFoundError:
        return _finished_as_decrypted(output_dir, file_name)
    record_file = result_path(output_dir, file_name)
    record = _read_json(record_file)
    if record is None:
        return Existing(stat.st_size, None, "not written by ghga-tasks")
    why_not = _vouch(path, stat, record, record_file)
    return Existing(stat.st_size, None if why_not else record, why_not)


def record_decrypted(output_dir: Path, file_name: str, decrypted: Path, sha256: str) -> None:
    """Vouch for the verified decrypted copy of ``file_name`` (see ``existing_file``)."""
    stat = decrypted.stat()
    # Relative to output_dir: the record still holds when the project directory moves.
    path = os.path.relpath(decrypted.resolve(), output_dir.resolve())
    record = {"path": path, "bytes": stat.st_size, "sha256": sha256}
    _write_json(decrypted_path(output_dir, file_name), {**record, "mtime_ns": stat.st_mtime_ns})


def _finished_as_decrypted(output_dir: Path, file_name: str) -> Existing | None:
    result = read_result(output_dir, file_name)
    record_file = decrypted_path(output_dir, file_name)
    decrypted = _read_json(record_file)
    if result is None or decrypted is None:
        return None
    try:
        path = output_dir / decrypted["path"]
        stat = path.stat()
    except (OSError, KeyError, TypeError):
        return None
    if _vouch(path, stat, decrypted, record_file):
        return None
    return Existing(int(result.get("bytes", 0)), result)


def _vouch(path: Path, stat: os.stat_result, record: dict[str, Any], record_file: Path) -> str:
    """Whether ``record`` still vouches for the file at ``path``: "" if so, else why not.
    A record whose time is stale is checked by content and sealed with the time now."""
    if record.get("bytes") != stat.st_size:
        return "changed since ghga-tasks wrote it (size)"
    if record.get("mtime_ns") == stat.st_mtime_ns and record.get("sealed"):
        return ""
    if file_sha256(path) != record.get("sha256"):
        return "changed since ghga-tasks wrote it (content)"
    _write_json(record_file, {**record, "mtime_ns": stat.st_mtime_ns, "sealed": True})
    return ""


def seal_result(output_dir: Path, file_name: str) -> None:
    """Take the times on disk now into the file's records, if the sizes still match (the
    report step, right after the downloads and decryptions: see the module's notes)."""
    _seal(output_dir / file_name, result_path(output_dir, file_name))
    decrypted = _read_json(decrypted_path(output_dir, file_name))
    if decrypted is not None and isinstance(decrypted.get("path"), str):
        _seal(output_dir / decrypted["path"], decrypted_path(output_dir, file_name))


def _seal(path: Path, record_file: Path) -> None:
    record = _read_json(record_file)
    if record is None or record.get("sealed"):
        return
    try:
        stat = path.stat()
    except FileNotFoundError:
        return
    if record.get("bytes") == stat.st_size:
        _write_json(record_file, {**record, "mtime_ns": stat.st_mtime_ns, "sealed": True})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(HASH_READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Written whole or not at all: a record cut short would vouch for nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or damaged: vouches for nothing
    return value if isinstance(value, dict) else None
