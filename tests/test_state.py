"""The records under ``<output_dir>/.ghga_tasks/`` (core/state.py)."""

from __future__ import annotations

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
