"""The records under ``<output_dir>/.ghga_tasks/`` (core/state.py)."""

from __future__ import annotations

import hashlib
import logging

from ghga_tasks.core import state
from ghga_tasks.core.errors import NoSpaceLeft


def test_a_failure_record_that_cannot_be_written_does_not_hide_the_failure(
    tmp_path, caplog
) -> None:
    """On the disk that just filled up, recording the failure fails too; the download's
    own error must stay the one raised (CI once showed the bare OSError instead)."""
    (tmp_path / state.STATE_DIR).write_text("not a directory")  # every write below fails
    error = NoSpaceLeft(path=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        state.record_failure(tmp_path, "GHGAF1.bam.c4gh", error)  # does not raise
    assert "GHGAF1.bam.c4gh: could not record why it failed" in caplog.text
    assert state.read_failure(tmp_path, "GHGAF1.bam.c4gh") is None


def test_a_failure_record_keeps_the_message_and_exit_code(tmp_path) -> None:
    state.record_failure(tmp_path, "GHGAF1.bam.c4gh", NoSpaceLeft(path=str(tmp_path)))
    record = state.read_failure(tmp_path, "GHGAF1.bam.c4gh")
    assert record is not None
    assert record["exit_code"] == NoSpaceLeft.exit_code
    assert "no space left on device" in record["error"]


def _finished_download(output_dir, file_name="GHGAF1.bam.c4gh", content=b"encrypted"):
    path = output_dir / file_name
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    state.record_result(output_dir, file_name, {"bytes": len(content), "sha256": digest,
                                                "mtime_ns": path.stat().st_mtime_ns})  # fmt: skip
    return path


def test_a_c4gh_removed_after_its_verified_decryption_is_finished_while_the_copy_is_unchanged(
    tmp_path,
) -> None:
    """keep_encrypted: false: the .c4gh is gone, the decrypted copy vouches for the file."""
    encrypted = _finished_download(tmp_path)
    copy = tmp_path / "decrypted" / "GHGAF1.bam"
    copy.parent.mkdir()
    copy.write_bytes(b"plaintext")
    state.record_decrypted(tmp_path, encrypted.name, copy, hashlib.sha256(b"plaintext").hexdigest())
    encrypted.unlink()

    existing = state.existing_file(tmp_path, encrypted.name)
    assert existing is not None and existing.vouched
    assert existing.size == len(b"encrypted")  # the download's record, for the report

    copy.write_bytes(b"PLAINTEXT")  # same size, other content: vouches for nothing now
    assert state.existing_file(tmp_path, encrypted.name) is None
    copy.unlink()
    assert state.existing_file(tmp_path, encrypted.name) is None


def test_a_decrypted_record_without_the_download_record_vouches_for_nothing(tmp_path) -> None:
    copy = tmp_path / "GHGAF1.bam"
    copy.write_bytes(b"plaintext")
    state.record_decrypted(
        tmp_path, "GHGAF1.bam.c4gh", copy, hashlib.sha256(b"plaintext").hexdigest()
    )
    assert state.existing_file(tmp_path, "GHGAF1.bam.c4gh") is None
