"""Signals during a download: Ctrl-C, SIGTERM (a cluster ending a job), SIGKILL.

Promise: the file being written when the signal came has no final file and no ``.part``
once the process is gone; files finished before it stay; after a SIGKILL, the ``.part``
it leaves is replaced by the next run. Real processes throughout: ``snakemake`` itself
(whose download jobs are threads), ``ghga-tasks step download`` as a cluster job runs it,
and ``ghga-tasks download``.

The interrupted file is slowed down on the sandbox (0.2 s per request, 32 ranges), and
the signal comes once its ``.part`` exists.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability.scenario import (
    WORK_ORDER_TOKEN,
    Batch,
    Run,
    assert_promise_kept,
    check_promise,
    record,
    suite_settings,
)

from ghga_tasks.core import state
from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults

pytestmark = pytest.mark.slow

SIGNALS = "signals"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUICK, SLOW = "GHGAF1", "GHGAF2"
FILES = [
    SandboxFile(QUICK, ".bam", size=100_000),  # planned first: done before the signal
    SandboxFile(SLOW, ".fastq.gz", size=2_000_000),  # interrupted
]
SLOW_NAME = "GHGAF2.fastq.gz.c4gh"


def slowed(sandbox: Sandbox) -> Sandbox:
    sandbox.set_faults(SLOW, Faults(delay_seconds=0.2))
    return sandbox


def environment(sandbox: Sandbox) -> dict[str, str]:
    return {
        **os.environ,
        **sandbox.env(),
        "GHGA_WORK_ORDER_TOKEN": WORK_ORDER_TOKEN,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until ``path`` exists (the download is under way), or fail if the process ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"ended before {path.name} appeared: {out[-2000:]}{err[-2000:]}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the file: some ranges written, most not


def finish(process: subprocess.Popen[str]) -> Run:
    out, err = process.communicate(timeout=120)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    return Run(process.returncode, out + err, lines[-1] if lines else "")


# --- one download job: ghga-tasks step download ---------------------------------------------


def start_download_step(sandbox: Sandbox, settings_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "ghga-tasks"), "step", "download", "--settings", str(settings_file),
         SLOW_NAME],
        env=environment(sandbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_download_job_stopped_by_a_signal_leaves_nothing_behind(
    signum, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    sandbox = slowed(sandbox_factory(FILES))
    settings = suite_settings(tmp_path, user_keys)
    steps = Batch(sandbox, settings)
    assert steps.plan().exit_code == 0
    assert steps.download("GHGAF1.bam.c4gh").exit_code == 0  # finished before the signal
    output = settings.output_dir
    job = start_download_step(sandbox, state.settings_path(output))
    wait_for(output / f"{SLOW_NAME}.part", job)
    job.send_signal(signum)
    run = finish(job)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario=f"{signum.name} to a download job (ghga-tasks step "
           "download)", area=SIGNALS, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 130, run.output[-2000:]
    assert "Interrupted" in run.user_sees
    assert not (output / SLOW_NAME).exists()
    assert (output / "GHGAF1.bam.c4gh").exists()
    assert_promise_kept(promise)


def test_part_left_by_a_sigkilled_job_is_replaced_by_the_next_run(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    sandbox = slowed(sandbox_factory(FILES))
    settings = suite_settings(tmp_path, user_keys)
    batch_run = Batch(sandbox, settings)
    assert batch_run.plan().exit_code == 0
    output = settings.output_dir
    job = start_download_step(sandbox, state.settings_path(output))
    wait_for(output / f"{SLOW_NAME}.part", job)
    job.kill()
    job.wait(timeout=60)
    assert (output / f"{SLOW_NAME}.part").exists()  # what a SIGKILL leaves
    sandbox.clear_faults()
    run = batch_run.download(SLOW_NAME)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="SIGKILL to a download job, then the next run",
           area=SIGNALS, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 0
    assert_promise_kept(promise)
    assert (output / SLOW_NAME).exists()


# --- the whole workflow: snakemake and ghga-tasks download -----------------------------------


def project(tmp_path: Path, user_keys, name: str = "project") -> Path:
    workdir = tmp_path / name
    workdir.mkdir()
    shutil.copy(user_keys.public_key_path, workdir / "key.pub")
    shutil.copy(user_keys.secret_key_path, workdir / "key.sec")
    return workdir


SNAKEMAKE_CONFIG = ["part_size=65536", "read_timeout=2", "range_retries=2"]


def start_snakemake(sandbox: Sandbox, workdir: Path, *config: str) -> subprocess.Popen[str]:
    """``snakemake --cores 1`` in its own process group, as a shell starts it."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config/config.yaml"), "--directory", str(workdir),
        "--cores", "1", "--config", *SNAKEMAKE_CONFIG, *config,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=environment(sandbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


def start_cli_download(sandbox: Sandbox, workdir: Path) -> subprocess.Popen[str]:
    (workdir / "ghga.yaml").write_text(
        "output_dir: downloads\nuser_public_key: key.pub\npart_size: 65536\nread_timeout: 2\n"
    )
    return subprocess.Popen(
        [str(BIN / "ghga-tasks"), "download", "--yes", "--config-file", "ghga.yaml"],
        cwd=workdir, env=environment(sandbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


@pytest.mark.snakemake
@pytest.mark.parametrize(
    ("runner", "signum"),
    [
        ("snakemake", signal.SIGINT),  # Ctrl-C in the terminal: the whole process group
        ("snakemake", signal.SIGTERM),  # kill -- -PGID, or a cluster ending the session
        ("ghga-tasks download", signal.SIGINT),
    ],
    ids=["snakemake-SIGINT", "snakemake-SIGTERM", "cli-SIGINT"],
)
def test_workflow_stopped_by_a_signal_keeps_finished_files_only(
    runner, signum, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    sandbox = slowed(sandbox_factory(FILES))
    workdir = project(tmp_path, user_keys)
    start = start_snakemake if runner == "snakemake" else start_cli_download
    process = start(sandbox, workdir)
    output = workdir / "downloads"
    wait_for(output / f"{SLOW_NAME}.part", process)
    os.killpg(process.pid, signum)
    run = finish(process)
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario=f"{signum.name} to {runner} (its process group)",
           area=SIGNALS, run=run, promise=promise)  # fmt: skip
    assert run.exit_code != 0
    assert not (output / SLOW_NAME).exists()
    assert (output / "GHGAF1.bam.c4gh").exists()  # finished before the signal: kept
    assert_promise_kept(promise)


@pytest.mark.snakemake
def test_ctrl_c_mid_file_in_the_cli_exits_130_naming_the_interrupted_file(
    sandbox_factory, user_keys, tmp_path
) -> None:
    after = SandboxFile("GHGAF3", ".vcf", size=100_000)  # planned after the slow file
    sandbox = slowed(sandbox_factory([*FILES, after]))
    workdir = project(tmp_path, user_keys)
    process = start_cli_download(sandbox, workdir)
    wait_for(workdir / "downloads" / f"{SLOW_NAME}.part", process)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "Interrupted: no partial file was kept."
    assert "ERROR" not in err  # the last line says it, once
    outcomes = {line.split()[0]: line for line in out.splitlines() if ".c4gh " in line}
    assert "interrupted" in outcomes[SLOW_NAME], out
    assert "not started" in outcomes["GHGAF3.vcf.c4gh"], out
    assert "Traceback" not in out + err
    assert not list((workdir / "downloads").glob("*.part"))


@pytest.mark.snakemake
def test_interrupted_batch_resumed_then_decrypt_verifies_every_file(
    sandbox_factory, user_keys, tmp_path
) -> None:
    """Ctrl-C mid-batch, run again: the second run downloads only what is missing, and
    the report keeps the first run's checksums, so decrypt verifies every file."""
    sandbox = slowed(sandbox_factory(FILES))
    workdir = project(tmp_path, user_keys)
    process = start_snakemake(sandbox, workdir)
    output = workdir / "downloads"
    wait_for(output / f"{SLOW_NAME}.part", process)
    os.killpg(process.pid, signal.SIGINT)
    assert finish(process).exit_code != 0
    sandbox.clear_faults()
    sandbox.requests.clear()
    resumed = start_snakemake(sandbox, workdir)
    assert finish(resumed).exit_code == 0
    fetched = {r.file_id for r in sandbox.requests.matching(path_prefix="/ga4gh")}
    assert fetched == {SLOW}  # the finished file was neither probed nor fetched again
    decrypt = subprocess.run(
        [str(BIN / "ghga-tasks"), "decrypt", "--input-dir", "downloads", "--output-dir",
         "plain", "--private-key", "key.sec"],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert decrypt.returncode == 0, decrypt.stderr
    statuses = [line.split()[0] for line in decrypt.stdout.splitlines() if "->" in line]
    assert statuses == ["verified", "verified"], decrypt.stdout


@pytest.mark.snakemake
def test_sigterm_to_snakemake_alone_stops_the_running_download(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """``kill PID`` of snakemake alone: the download running in it (a thread) stops and
    removes its ``.part``, no new job starts, and snakemake ends with an error."""
    sandbox = slowed(sandbox_factory([*FILES, SandboxFile("GHGAF3", "", size=10_000)]))
    workdir = project(tmp_path, user_keys)
    process = start_snakemake(sandbox, workdir)
    output = workdir / "downloads"
    wait_for(output / f"{SLOW_NAME}.part", process)
    process.send_signal(signal.SIGTERM)
    run = finish(process)
    job_log = (output / "logs/download" / f"{SLOW_NAME}.log").read_text()
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output, job_log])
    record(record_property, scenario="SIGTERM to snakemake alone", area=SIGNALS, run=run,
           promise=promise)  # fmt: skip
    assert run.exit_code != 0
    assert run.user_sees == "Interrupted: no partial file was kept.", run.output[-2000:]
    assert "Stopped: interrupted: no partial file was kept" in job_log
    assert not (output / SLOW_NAME).exists()
    assert not (output / "GHGAF3.c4gh").exists()  # planned after it: never started
    assert (output / "GHGAF1.bam.c4gh").exists()
    assert_promise_kept(promise)


@pytest.mark.snakemake
def test_part_left_by_a_sigkilled_snakemake_is_replaced_by_the_next_run(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """The download is a thread of snakemake: SIGKILL ends both mid-file and leaves the
    ``.part``. The same command again, in the same directory (no ``--unlock``: the
    profile takes no Snakemake lock, and our run lock died with the run), replaces it and
    completes the file."""
    sandbox = slowed(sandbox_factory(FILES))
    output = tmp_path / "downloads"
    workdir = project(tmp_path, user_keys)
    first = start_snakemake(sandbox, workdir, f"output_dir={output}")
    wait_for(output / f"{SLOW_NAME}.part", first)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert (output / f"{SLOW_NAME}.part").exists()  # what a SIGKILL leaves
    sandbox.clear_faults()
    run = finish(start_snakemake(sandbox, workdir, f"output_dir={output}"))
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="SIGKILL to snakemake mid-file, then the next run",
           area=SIGNALS, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    assert_promise_kept(promise)
    assert (output / SLOW_NAME).exists()


@pytest.mark.snakemake
def test_orphaned_job_and_a_new_run_never_share_a_part(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Download jobs as their own processes (``downloads_on_cluster``, as a cluster
    executor runs them): SIGKILL to snakemake leaves its download job running. A new run
    (another working directory, same output directory) is not blocked by the dead run's
    lock, but its job for the orphan's file is refused; the orphan then completes it."""
    sandbox = slowed(sandbox_factory(FILES))
    output = tmp_path / "downloads"
    first = start_snakemake(
        sandbox, project(tmp_path, user_keys, "first"), f"output_dir={output}",
        "downloads_on_cluster=true",
    )  # fmt: skip
    wait_for(output / f"{SLOW_NAME}.part", first)
    os.kill(first.pid, signal.SIGKILL)  # snakemake only: its job lives on as an orphan
    first.wait(timeout=60)  # not communicate(): the orphan still holds the pipes open
    os.killpg(first.pid, signal.SIGSTOP)  # hold the orphan mid-file while the new run goes
    try:
        second = start_snakemake(
            sandbox,
            project(tmp_path, user_keys, "second"),
            f"output_dir={output}",
            "downloads_on_cluster=true",
            "skip_downloaded=true",  # GHGAF1 was finished by the first run
        )
        run = finish(second)
        job_log = (output / "logs/download" / f"{SLOW_NAME}.log").read_text()
    finally:
        os.killpg(first.pid, signal.SIGCONT)
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
    run.user_sees = next((ln for ln in job_log.splitlines() if "Error:" in ln), run.user_sees)
    deadline = time.monotonic() + 120
    while (output / f"{SLOW_NAME}.part").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the orphan finishes its file
    promise = check_promise(output, sandbox, user_keys.secret_key, [run.output, job_log])
    record(record_property, scenario="SIGKILL to snakemake, a new run while its job lives on",
           area=SIGNALS, run=run, promise=promise)  # fmt: skip
    assert run.exit_code != 0 and "still writing this file" in run.user_sees
    assert_promise_kept(promise)
    assert (output / SLOW_NAME).exists()  # the orphan's work, complete and correct
