"""Resuming an interrupted file (``resume_partial: true``): SIGKILL, SIGTERM and Ctrl-C
mid-file, then the next run; a sidecar that is corrupt or belongs to another object; a
disk that fills up during the resumed download.

Real processes and real signals: the interrupted download is ``ghga-tasks step download``
(as a cluster job runs it) or ``ghga-tasks download --resume`` (Snakemake inside), and the
sandbox slows the file down so the signal lands mid-file. A signal is sent once the
``.part`` holds (or its sidecar records) bytes, never after a timed sleep. Bytes fetched
are counted from the sandbox's request log (the ``Range`` of every object-store request).

Promise as in the rest of the fault suite, with one change: a ``.part`` whose sidecar
records bytes to resume is kept on purpose (``check_promise(..., resume_partial=True)``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability.scenario import (
    Batch,
    Run,
    assert_promise_kept,
    check_promise,
    record,
    suite_settings,
)
from test_faults_local import _fill_when_exists, small_disk  # noqa: F401  (a fixture)
from test_signals import environment, finish

from ghga_tasks.core import report, state
from ghga_tasks.core.report import human_bytes
from ghga_tasks.core.resume import kept_bytes, sidecar_path
from ghga_tasks.core.verify import CIPHER_SEGMENT_SIZE
from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults

pytestmark = pytest.mark.slow

RESUME = "resume"
BIN = Path(sys.executable).parent
ENVELOPE_SIZE = 124
BIG = SandboxFile("GHGAF1", ".bam", size=6_000_000)  # interrupted mid-file
OTHER = SandboxFile("GHGAF2", "", size=3_000_000)
BIG_NAME, OTHER_NAME = "GHGAF1.bam.c4gh", "GHGAF2.c4gh"


def start_step(sandbox: Sandbox, output_dir: Path, file_name: str) -> subprocess.Popen[str]:
    """``ghga-tasks step download`` of one planned file, in its own process."""
    return subprocess.Popen(
        [str(BIN / "ghga-tasks"), "step", "download", "--settings",
         str(state.settings_path(output_dir)), file_name],
        env=environment(sandbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_until(done: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    """Until ``done()`` holds, or fail if the process ended first (the file was too fast)."""
    deadline = time.monotonic() + 120
    while not done():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"ended before {what}: {out[-2000:]}{err[-2000:]}")
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def object_size(sandbox: Sandbox, file_id: str) -> int:
    return sandbox.object_path(file_id).stat().st_size


def bytes_asked(sandbox: Sandbox, file_id: str, since: float) -> int:
    """Object bytes asked for by requests that arrived ``since`` then (epoch seconds; a
    killed job's last requests may still be answered after it died)."""
    asked = 0
    for request in sandbox.requests.matching(path_prefix="/s3/", file_id=file_id):
        if request.timestamp < since:
            continue
        assert request.status == 206 and request.range, request
        first, last = request.range.removeprefix("bytes=").split("-")
        asked += int(last) - int(first) + 1
    return asked


def reused_bytes(output_dir: Path, file_name: str) -> int:
    return int(json.loads(state.result_path(output_dir, file_name).read_text())["reused_bytes"])


def planned_batch(sandbox: Sandbox, tmp_path: Path, user_keys, **overrides) -> Batch:
    values = {"resume_partial": True, "verify": True, **overrides}
    settings = suite_settings(tmp_path, user_keys, **values)
    batch = Batch(sandbox, settings)
    assert batch.plan().exit_code == 0
    return batch


def slowed_batch(
    sandbox_factory, tmp_path: Path, user_keys, files=(BIG,), **overrides
) -> tuple[Batch, Path, int]:
    """A planned batch whose file GHGAF1 the sandbox slows down (0.3 s per request), its
    ``.part`` and its object size."""
    sandbox = sandbox_factory(list(files))
    sandbox.set_faults(BIG.file_id, Faults(delay_seconds=0.3))
    batch = planned_batch(sandbox, tmp_path, user_keys, **overrides)
    part = batch.settings.output_dir / f"{BIG_NAME}.part"
    return batch, part, object_size(sandbox, BIG.file_id)


def interrupt_step(batch: Batch, file_name: str, signum: int = signal.SIGINT) -> Run:
    """Start the file's download job (slowed down), stop it with ``signum`` once its
    sidecar records bytes; the job's outcome."""
    output = batch.settings.output_dir
    part = output / f"{file_name}.part"
    job = start_step(batch.sandbox, output, file_name)
    wait_until(lambda: kept_bytes(part) > 0, job, "the sidecar recorded bytes")
    job.send_signal(signum)
    return finish(job)


def resumed(batch: Batch, file_name: str) -> tuple[Run, int]:
    """The next run of the file at full speed, and the object bytes it asked for."""
    batch.sandbox.clear_faults()
    started = time.time()
    run = batch.download(file_name)
    file_id = file_name.split(".")[0]
    return run, bytes_asked(batch.sandbox, file_id, since=started)


# --- killed mid-file, then the next run -------------------------------------------------------


def test_sigkill_at_half_the_file_then_the_next_run_fetches_only_what_was_not_recorded(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """SIGKILL: no clean-up runs, so only what the sidecar recorded before the kill counts;
    the next run asks for exactly the rest, and the file decrypts to the archive's bytes."""
    batch, part, size = slowed_batch(sandbox_factory, tmp_path, user_keys)
    sandbox, output = batch.sandbox, batch.settings.output_dir
    job = start_step(sandbox, output, BIG_NAME)
    wait_until(lambda: kept_bytes(part) >= size // 2, job, "half the file was recorded")
    job.kill()
    job.wait(timeout=60)
    recorded = kept_bytes(part)  # the sidecar only grows: this is what the kill left
    assert recorded < size, "the file finished before the kill"
    run, asked = resumed(batch, BIG_NAME)
    promise = check_promise(
        output, sandbox, user_keys.secret_key, [run.output], resume_partial=True
    )
    record(record_property, scenario="SIGKILL at half a file, then the next run (resume_partial)",
           area=RESUME, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    assert 0 < asked <= size - recorded  # what was recorded is not fetched again
    assert asked + reused_bytes(output, BIG_NAME) == size
    assert "decrypted content matches the archive's SHA-256" in run.output  # verify: true
    assert_promise_kept(promise)
    assert promise.final_files == 1 and not part.exists() and not sidecar_path(part).exists()


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no-resume"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_keeps_a_resumable_part_only_with_resume_partial(
    signum, resume, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Ctrl-C or SIGTERM (a cluster ending the job): with resume_partial the .part and its
    sidecar stay, every written byte recorded, and the message says so; without, the
    .part goes as before. The next run reuses exactly what was recorded."""
    batch, part, size = slowed_batch(sandbox_factory, tmp_path, user_keys, resume_partial=resume)
    sandbox, output = batch.sandbox, batch.settings.output_dir
    job = start_step(sandbox, output, BIG_NAME)
    written = (lambda: kept_bytes(part) > 0) if resume else (lambda: _object_bytes_in(part) > 0)
    wait_until(written, job, "bytes were written")
    job.send_signal(signum)
    run = finish(job)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output],
                            resume_partial=resume)  # fmt: skip
    record(record_property, scenario=f"{signum.name} to a download job, resume_partial "
           f"{str(resume).lower()}", area=RESUME, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 130, run.output[-3000:]
    assert_promise_kept(promise)
    if not resume:
        assert run.user_sees == "Interrupted: no partial file was kept."
        assert not part.exists() and not sidecar_path(part).exists()
        return
    kept = kept_bytes(part)
    assert 0 < kept < size
    assert run.user_sees == (
        f"Interrupted: {human_bytes(kept)} kept in {part.name}; run again to resume."
    )
    again, asked = resumed(batch, BIG_NAME)
    assert again.exit_code == 0, again.output[-3000:]
    assert reused_bytes(output, BIG_NAME) == kept and asked == size - kept
    assert_promise_kept(check_promise(output, sandbox, user_keys.secret_key, [again.output]))


def _object_bytes_in(part: Path) -> int:
    """How far past the envelope the .part reaches (ranges land at their offsets)."""
    try:
        return max(part.stat().st_size - ENVELOPE_SIZE, 0)
    except FileNotFoundError:
        return 0


def test_network_failure_mid_file_keeps_the_part_for_the_next_run(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Every connection breaks once some bytes are recorded: the ranges' retries run out
    (exit 1, as without resume), the .part stays with every written byte recorded, and the
    next run fetches only the rest."""
    batch, part, size = slowed_batch(sandbox_factory, tmp_path, user_keys)
    sandbox, output = batch.sandbox, batch.settings.output_dir
    job = start_step(sandbox, output, BIG_NAME)
    wait_until(lambda: kept_bytes(part) > 0, job, "the sidecar recorded bytes")
    sandbox.set_faults(BIG.file_id, Faults(drop_after_bytes=0))  # every body cut at once
    run = finish(job)
    kept = kept_bytes(part)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output],
                            resume_partial=True)  # fmt: skip
    record(record_property, scenario="the network fails mid-file (resume_partial)",
           area=RESUME, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 1 and "download failed" in run.user_sees, run.output[-3000:]
    note = f"{BIG_NAME}: {human_bytes(kept)} kept in {part.name}; run again to resume"
    assert note in run.output  # the job's log line
    report.write_report_after_failure(output)  # what the CLI and the workflow print then:
    assert f"  {note}" in report.summary_lines(output)  # the failure's own line names no .part
    assert_promise_kept(promise)
    again, asked = resumed(batch, BIG_NAME)
    assert again.exit_code == 0, again.output[-3000:]
    assert 0 < kept == reused_bytes(output, BIG_NAME) and asked == size - kept


@pytest.mark.snakemake
def test_ctrl_c_in_ghga_tasks_download_resume_then_the_same_command_completes(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """What a user sees: the summary and the last line name the kept .part; the same
    command again finishes the file, and the report says how much was reused."""
    sandbox = sandbox_factory([OTHER, BIG])  # GHGAF2 first: finished before the signal
    sandbox.set_faults(BIG.file_id, Faults(delay_seconds=0.3))
    workdir = tmp_path / "project"
    workdir.mkdir()
    shutil.copy(user_keys.public_key_path, workdir / "key.pub")
    (workdir / "ghga.yaml").write_text("output_dir: downloads\npart_size: 65536\n")
    command = [str(BIN / "ghga-tasks"), "download", "--yes", "--resume",
               "--config-file", "ghga.yaml"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=workdir, env=environment(sandbox), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    output = workdir / "downloads"
    part = output / f"{BIG_NAME}.part"
    wait_until(lambda: kept_bytes(part) > 0, process, "the sidecar recorded bytes")
    os.killpg(process.pid, signal.SIGINT)
    run = finish(process)
    kept = kept_bytes(part)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output],
                            resume_partial=True)  # fmt: skip
    record(record_property, scenario="Ctrl-C to ghga-tasks download --resume",
           area=RESUME, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 130, run.output[-3000:]
    note = f"{human_bytes(kept)} kept in {part.name}; run again to resume"
    summary = [line for line in run.output.splitlines() if line.startswith(f"  {BIG_NAME} ")]
    assert len(summary) == 1 and f"interrupted: {note}" in summary[0], run.output[-3000:]
    assert run.user_sees == f"Interrupted: {note}."
    assert_promise_kept(promise)
    sandbox.clear_faults()
    again = subprocess.run(command, cwd=workdir, env=environment(sandbox),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    with (output / "ghga_report.tsv").open(newline="") as stream:
        rows = {row["file_name"]: row for row in csv.DictReader(stream, delimiter="\t")}
    assert rows[BIG_NAME]["outcome"] == "downloaded" and int(rows[BIG_NAME]["reused_bytes"]) == kept
    assert rows[OTHER_NAME]["reused_bytes"] == "0"
    assert_promise_kept(check_promise(output, sandbox, user_keys.secret_key, [again.stdout]))


# --- a sidecar that cannot be trusted: start over, never crash --------------------------------


def _garbage(part: Path) -> None:
    sidecar_path(part).write_bytes(b"\x00\xff not json")


def _cut_short(part: Path) -> None:
    text = sidecar_path(part).read_text()
    sidecar_path(part).write_text(text[: len(text) // 2])


def _wrong_types(part: Path) -> None:
    record_ = json.loads(sidecar_path(part).read_text())
    sidecar_path(part).write_text(json.dumps({**record_, "ranges": "all of them"}))


def _part_shorter_than_recorded(part: Path) -> None:
    os.truncate(part, ENVELOPE_SIZE)


def _recorded_segment_corrupt(part: Path) -> None:
    """A bit flipped in the first whole cipher segment the sidecar records."""
    first = json.loads(sidecar_path(part).read_text())["ranges"][0][0]
    segment = -(-first // CIPHER_SEGMENT_SIZE) * CIPHER_SEGMENT_SIZE
    with part.open("r+b") as stream:
        stream.seek(ENVELOPE_SIZE + segment + 100)
        byte = stream.read(1)
        stream.seek(-1, os.SEEK_CUR)
        stream.write(bytes([byte[0] ^ 1]))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_garbage, "is unreadable"),  # not JSON at all
        (_cut_short, "is unreadable"),  # a record cut off mid-way (another tool's copy)
        (_wrong_types, "is unreadable"),  # JSON, but not a sidecar's fields
        (_part_shorter_than_recorded, "the .part is shorter than its sidecar records"),
        # verify: the kept bytes must decrypt with the file's key (a re-encrypted object)
        (_recorded_segment_corrupt, "do not decrypt with the file's key"),
    ],
    ids=["garbage", "cut-short", "wrong-types", "part-shorter", "segment-corrupt"],
)
def test_sidecar_that_cannot_be_trusted_means_starting_over(
    damage, why, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    batch, part, size = slowed_batch(sandbox_factory, tmp_path, user_keys)
    sandbox, output = batch.sandbox, batch.settings.output_dir
    assert interrupt_step(batch, BIG_NAME).exit_code == 130
    damage(part)
    run, asked = resumed(batch, BIG_NAME)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario=f"a kept .part whose sidecar fails: {damage.__name__[1:]}",
           area=RESUME, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    starting_over = [line for line in run.output.splitlines() if "starting over" in line]
    assert len(starting_over) == 1 and why in starting_over[0], run.output[-3000:]
    assert asked == size and reused_bytes(output, BIG_NAME) == 0
    assert_promise_kept(promise)
    assert promise.final_files == 1


def test_sidecar_of_another_file_means_starting_over(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Another file's kept .part and sidecar under this file's names (a copy, a rename):
    other file ID and size, so nothing of it is reused."""
    batch, _part, _size = slowed_batch(sandbox_factory, tmp_path, user_keys, (BIG, OTHER))
    sandbox, output = batch.sandbox, batch.settings.output_dir
    assert interrupt_step(batch, BIG_NAME).exit_code == 130
    big_part, other_part = output / f"{BIG_NAME}.part", output / f"{OTHER_NAME}.part"
    big_part.rename(other_part)
    sidecar_path(big_part).rename(sidecar_path(other_part))
    run, asked = resumed(batch, OTHER_NAME)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="a sidecar of another file", area=RESUME, run=run,
           promise=promise)  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    assert f"starting over: it was written for file_id '{BIG.file_id}'" in run.output
    assert asked == object_size(sandbox, OTHER.file_id)
    assert reused_bytes(output, OTHER_NAME) == 0
    assert_promise_kept(promise)


def test_sidecar_of_a_re_encrypted_object_means_starting_over(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """The archive now holds the file under a new envelope (here: a new sandbox for the
    same file ID and size, with its own keys): the kept bytes are another encryption."""
    first = sandbox_factory([BIG])
    first.set_faults(BIG.file_id, Faults(delay_seconds=0.3))
    batch = planned_batch(first, tmp_path, user_keys)
    output = batch.settings.output_dir
    assert interrupt_step(batch, BIG_NAME).exit_code == 130
    first.stop()
    second = sandbox_factory([BIG])
    assert object_size(second, BIG.file_id) == object_size(first, BIG.file_id)
    batch = Batch(second, batch.settings)
    assert batch.plan().exit_code == 0
    run, asked = resumed(batch, BIG_NAME)
    promise = check_promise(output, second, user_keys.secret_key, [run.output])
    record(record_property, scenario="a sidecar of an object the archive re-encrypted",
           area=RESUME, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    assert "starting over: it was written for " in run.output
    assert asked == object_size(second, BIG.file_id) and reused_bytes(output, BIG_NAME) == 0
    assert_promise_kept(promise)


# --- the disk fills up while a kept .part is resumed --------------------------------------------


def test_disk_filling_up_during_a_resumed_download_fails_as_any_full_disk(
    small_disk,  # noqa: F811  (the fixture imported above)
    sandbox_factory,
    user_keys,
    tmp_path,
    record_property,
) -> None:
    """Exit 1 and the usual one line; no final file; the .part stays resumable, and once
    there is room again the next run completes it."""
    fits = SandboxFile(BIG.file_id, BIG.extension, size=600_000)  # on a 1 MiB disk
    batch, part, _size = slowed_batch(sandbox_factory, tmp_path, user_keys, [fits],
                                      output_dir=small_disk, part_size=16 * 1024)  # fmt: skip
    sandbox = batch.sandbox
    assert interrupt_step(batch, BIG_NAME).exit_code == 130
    kept = kept_bytes(part)
    filler = small_disk / "someone-elses-file"
    blocks = part.stat().st_blocks
    grown = threading.Thread(target=_fill_once_grown, args=(part, blocks, filler), daemon=True)
    grown.start()
    run = batch.download(BIG_NAME)  # still slowed down: the filler strikes mid-file
    grown.join(timeout=30)
    promise = check_promise(small_disk, sandbox, user_keys.secret_key, [run.output],
                            resume_partial=True)  # fmt: skip
    record(record_property, scenario="disk fills up while a kept .part is resumed (1 MiB tmpfs)",
           area=RESUME, run=run, promise=promise)  # fmt: skip
    assert filler.exists(), "the disk was never filled"
    assert run.exit_code == 1 and "no space left on device" in run.user_sees, run.output[-3000:]
    assert promise.final_files == 0
    assert_promise_kept(promise)
    assert kept_bytes(part) >= kept  # what was recorded stays recorded
    filler.unlink()
    again, _asked = resumed(batch, BIG_NAME)
    assert again.exit_code == 0, again.output[-3000:]
    assert reused_bytes(small_disk, BIG_NAME) >= kept
    assert_promise_kept(check_promise(small_disk, sandbox, user_keys.secret_key, [again.output]))


def _fill_once_grown(part: Path, blocks: int, filler: Path) -> None:
    """Fill the disk once the resumed download has written more of ``part``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if part.stat().st_blocks > blocks:
                break
        except FileNotFoundError:
            return
        time.sleep(0.005)
    _fill_when_exists(part, filler)
