"""Fault scenarios on the user's side: a full disk, two runs on one directory, a job left
running by a killed run, a ``.part`` left by a SIGKILL, and the user's own files.

Same promise as ``test_faults.py``: no stray ``.part``, no corrupt final file, no secret
in any output, and an exit code and message that say what happened.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability.scenario import (
    Batch,
    Run,
    assert_promise_kept,
    check_promise,
    in_ci,
    record,
    suite_settings,
)

from ghga_tasks.core.download import PartFile, Target, finalize_part
from ghga_tasks.core.errors import OutputExists
from ghga_tasks.core.locks import hold_run_lock
from ghga_tasks.sandbox import SandboxFile
from ghga_tasks.sandbox.faults import Faults

LOCAL = "local machine"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BATCH = [
    SandboxFile("GHGAF1", ".bam", size=300_000),
    SandboxFile("GHGAF2", ".fastq.gz", size=200_000),
    SandboxFile("GHGAF3", "", size=50_000),
]


def _mount_tmpfs(directory: Path, size: str, *, read_only: bool = False) -> bool:
    directory.mkdir(parents=True)
    options = f"size={size}" + (",ro" if read_only else "")
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)]
    for prefix in ([], ["sudo", "-n"]):
        if shutil.which((prefix or command)[0]) is None:
            continue
        if subprocess.run([*prefix, *command], capture_output=True).returncode == 0:
            return True
    return False


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root, or password-less sudo). Locally skipped without; CI must have it."""
    yield from _tmpfs(tmp_path / "small-disk")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs: unwritable even for root (CI runs as root)."""
    yield from _tmpfs(tmp_path / "read-only", read_only=True)


def _tmpfs(directory: Path, *, read_only: bool = False) -> Iterator[Path]:
    if not _mount_tmpfs(directory, "1m", read_only=read_only):
        if in_ci():
            pytest.fail("cannot mount a tmpfs for the file system scenarios (CI runs as root)")
        pytest.skip("cannot mount a tmpfs here (needs root or password-less sudo)")
    yield directory
    for prefix in ([], ["sudo", "-n"]):
        if (
            subprocess.run(
                [*prefix, "umount", "-l", str(directory)], capture_output=True
            ).returncode
            == 0
        ):
            break


def test_disk_too_small_for_a_file_fails_it_before_writing(
    small_disk, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """The plan warns; the file that does not fit fails at once; the others arrive."""
    files = [
        SandboxFile("GHGAF1", ".bam", size=400_000),
        SandboxFile("GHGAF2", ".fastq.gz", size=800_000),  # cannot fit next to GHGAF1
        SandboxFile("GHGAF3", "", size=50_000),
    ]
    sandbox = sandbox_factory(files)
    settings = suite_settings(tmp_path, user_keys, output_dir=small_disk)
    run = Batch(sandbox, settings).download_planned()
    promise = check_promise(small_disk, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="disk too small for the next file (1 MiB tmpfs)",
           area=LOCAL, run=run, promise=promise)  # fmt: skip
    assert "not enough free space" in run.output  # the plan warned before any download
    assert run.exit_code == 1 and "no space left on device" in run.user_sees
    assert_promise_kept(promise)
    assert sorted(p.name for p in small_disk.glob("*.c4gh")) == ["GHGAF1.bam.c4gh", "GHGAF3.c4gh"]


def test_disk_filling_up_during_a_download_fails_cleanly(
    small_disk, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Another program fills the disk while a file is being written: ENOSPC mid-file."""
    sandbox = sandbox_factory([SandboxFile("GHGAF1", ".bam", size=500_000)])
    settings = suite_settings(tmp_path, user_keys, output_dir=small_disk, part_size=16 * 1024)
    filler = small_disk / "someone-elses-file"
    batch = Batch(sandbox, settings)
    assert batch.plan().exit_code == 0
    sandbox.set_faults("GHGAF1", Faults(delay_seconds=0.3))  # time for the filler to strike
    part = small_disk / "GHGAF1.bam.c4gh.part"
    filling = threading.Thread(target=_fill_when_exists, args=(part, filler), daemon=True)
    filling.start()
    run = batch.download("GHGAF1.bam.c4gh")
    filling.join(timeout=30)
    promise = check_promise(small_disk, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="disk fills up in the middle of a file (1 MiB tmpfs)",
           area=LOCAL, run=run, promise=promise)  # fmt: skip
    assert filler.exists(), "the disk was never filled"
    assert run.exit_code == 1 and "no space left on device" in run.user_sees
    assert_promise_kept(promise)
    assert promise.final_files == 0


def _fill_when_exists(part: Path, filler: Path) -> None:
    deadline = time.monotonic() + 20
    while not part.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with filler.open("wb") as stream:
            while True:
                stream.write(b"\0" * 4096)
                stream.flush()
    except OSError:
        pass  # full: that was the point


def test_second_run_on_the_same_output_directory_is_refused(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Another snakemake (another working directory) while a run holds the directory."""
    sandbox = sandbox_factory(BATCH)
    output_dir = tmp_path / "downloads"
    hold_run_lock(output_dir)  # this test process plays the first run
    workdir = tmp_path / "second"
    workdir.mkdir()
    shutil.copy(user_keys.public_key_path, workdir / "key.pub")
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config/config.yaml"), "--directory", str(workdir),
        "--cores", "1", "--config", f"output_dir={output_dir}",
    ]  # fmt: skip
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    seen = [line for line in done.stderr.splitlines() if "another ghga-tasks run" in line]
    run = Run(done.returncode, done.stdout + done.stderr, seen[0] if seen else "")
    promise = check_promise(output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="a second run on the same output directory",
           area=LOCAL, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 1 and f"process {os.getpid()}" in run.user_sees
    assert [r for r in sandbox.requests.snapshot() if "/objects/" in r.path] == []
    assert_promise_kept(promise)


def test_job_never_writes_a_part_another_job_holds(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """A download job orphaned by a SIGKILLed Snakemake still writes GHGAF1's .part; the
    new run's job for that file is refused instead of truncating it under the orphan."""
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    batch = Batch(sandbox, settings)
    assert batch.plan().exit_code == 0
    part = settings.output_dir / "GHGAF1.bam.c4gh.part"
    orphan = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(orphan, fcntl.LOCK_EX)
    os.write(orphan, b"the orphan's bytes")
    try:
        refused = batch.download("GHGAF1.bam.c4gh")
        assert part.read_bytes() == b"the orphan's bytes"  # not truncated
    finally:
        part.unlink()  # the orphan fails or finishes: either way its .part goes
        os.close(orphan)
    others = [batch.download(name) for name in ("GHGAF2.fastq.gz.c4gh", "GHGAF3.c4gh")]
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [refused.output])
    record(record_property, scenario="a job left running by a killed run holds a .part",
           area=LOCAL, run=refused, promise=promise)  # fmt: skip
    assert refused.exit_code == 1 and "still writing this file" in refused.user_sees
    assert [run.exit_code for run in others] == [0, 0]
    assert_promise_kept(promise)


def test_part_left_by_a_killed_job_is_replaced(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    batch = Batch(sandbox, settings)
    settings.output_dir.mkdir(parents=True)
    stale = settings.output_dir / "GHGAF1.bam.c4gh.part"
    stale.write_bytes(b"left by a SIGKILLed job " * 50_000)  # longer than the real file
    run = batch.download_planned()
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="a .part left by a SIGKILLed job", area=LOCAL, run=run,
           promise=promise)  # fmt: skip
    assert run.exit_code == 0
    assert_promise_kept(promise)
    assert promise.final_files == 3


def test_users_existing_file_is_kept_and_the_run_says_so(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """skip_downloaded false: the run stops and lists it (exit 3); the file is untouched."""
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    mine = settings.output_dir / "GHGAF1.bam.c4gh"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own copy")
    run = Batch(sandbox, settings).download_planned()
    promise = check_promise(
        settings.output_dir, sandbox, user_keys.secret_key, [run.output], ignore={mine.name}
    )
    record(record_property, scenario="the user's file is already in the output directory",
           area=LOCAL, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 3 and "GHGAF1.bam.c4gh" in run.user_sees
    assert mine.read_bytes() == b"the user's own copy"
    assert_promise_kept(promise)


def test_file_appearing_during_a_download_is_not_overwritten(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """A final file created after the plan (another tool, a copy) is never replaced: the
    download fails instead (exit 1) and the file stays as it was."""
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    batch = Batch(sandbox, settings)
    assert batch.plan().exit_code == 0
    mine = settings.output_dir / "GHGAF2.fastq.gz.c4gh"
    mine.write_bytes(b"copied in by the user meanwhile")
    run = batch.download(mine.name)
    promise = check_promise(
        settings.output_dir, sandbox, user_keys.secret_key, [run.output], ignore={mine.name}
    )
    record(record_property, scenario="a file with the final name appears during the run",
           area=LOCAL, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 1 and "never replaces a file" in run.user_sees
    assert mine.read_bytes() == b"copied in by the user meanwhile"
    assert_promise_kept(promise)


def test_finalize_never_replaces_a_file_that_appeared_at_the_last_moment(tmp_path) -> None:
    """The rename itself refuses (a hard link, not a replace) when the final name exists."""
    target = Target(final=tmp_path / "F.bam.c4gh", part=tmp_path / "F.bam.c4gh.part")
    with pytest.raises(OutputExists), PartFile(target) as part:
        os.write(part.fd, b"12345")
        target.final.write_bytes(b"theirs")  # appears after every earlier check
        finalize_part(part, expected_size=5, file_id="F")
    assert target.final.read_bytes() == b"theirs"
    assert not target.part.exists()


# --- an output directory that cannot take files: one line, no traceback ----------------------


def _cli(project: Path, sandbox, output_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "ghga-tasks"), "download", "--yes", "--output-dir", str(output_dir)],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _snakemake(project: Path, sandbox, output_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--configfile", str(REPO / "config/config.yaml"), "--directory", str(project),
         "--cores", "1", "--config", f"output_dir={output_dir}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("runner", [_cli, _snakemake], ids=["cli", "snakemake"])
@pytest.mark.parametrize("where", ["read-only", "a-file"])
def test_an_output_directory_that_cannot_take_files_is_one_line(
    runner, where, read_only_disk, sandbox_factory, user_keys, tmp_path
) -> None:
    sandbox = sandbox_factory(BATCH[:1])
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(user_keys.public_key_path, project / "key.pub")
    if where == "read-only":
        output_dir, named, problem = read_only_disk / "downloads", read_only_disk, "read-only"
    else:
        (project / "notes").write_text("mine")
        output_dir, named, problem = (
            project / "notes" / "downloads",
            project / "notes",
            ("is not a directory"),
        )
    run = runner(project, sandbox, output_dir)
    assert run.returncode != 0
    assert "Traceback" not in run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if f"{named}: " in line]
    assert len(errors) == 1 and problem in errors[0], run.stderr[-2000:]
    assert sandbox.requests.snapshot() == []  # stopped before asking the archive anything
