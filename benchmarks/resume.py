"""R1: one big file killed (SIGKILL) at half of it, then resumed (``resume_partial``).

The figure is every object byte the object store sent over both runs, divided by the
object's size: 1.0 would be a perfect resume, 2.0 what a restart from byte 0 costs.
Target (issue 15): at most 1.1. nginx counts the bytes (``$body_bytes_sent`` of every
request, including those the kill cut short), so nothing here trusts our own report.

The kill comes when half of the object is *written* (the ``.part``'s allocated blocks, as
the CLI's progress reads them), not when the sidecar last recorded: the bytes written
since the last record are what a SIGKILL costs, and they count. A SIGKILL is the worst
case: Ctrl-C and SIGTERM record every written byte before the process ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ghga_tasks.sandbox import Sandbox, SandboxFile, ensure_user_keypair

from .competitors import Batch, ghga_tasks_cli
from .harness import Context, batch_of, check_outputs, expect_files
from .measure import run_measured
from .objectserver import ObjectServer
from .results import MIB, Row

if TYPE_CHECKING:
    from .scenarios import Sizes

log = logging.getLogger("benchmarks")

NAME = "R1"
COMPETITOR = "ghga-tasks download --resume"
TARGET = 1.1
KILL_AT = 0.5  # of the object written
POLL_SECONDS = 0.01


class CountingObjectServer(ObjectServer):
    """The benchmark's nginx, with one access-log line per request: the body bytes sent."""

    def _config(self) -> str:
        log_line = f"log_format sent '$body_bytes_sent';\n    access_log {self.sent_log} sent;"
        return super()._config().replace("access_log off;", log_line)

    @property
    def sent_log(self) -> Path:
        return self.workdir / "sent.log"

    def bytes_sent(self) -> int:
        return sum(int(line) for line in self.sent_log.read_text().split())


def r1_resume(ctx: Context, sizes: Sizes) -> list[Row]:
    """Kill at half of a ``sizes.big`` file, run the same command again, count the bytes."""
    row = Row(NAME, COMPETITOR, "bytes fetched", "x file", target=f"≤ {TARGET} x the file")
    # A smoke-sized file would be done before the kill: it gets the capped rate instead.
    limit = sizes.rate if sizes.big < 64 * MIB else None
    root = ctx.workdir / "sandbox-resume"
    with CountingObjectServer(ctx.workdir / "nginx-resume", [root], {"r1": limit}) as objects:
        big = SandboxFile("GHGAF00000000000009", ".bam", sizes.big)
        sandbox = Sandbox(
            files=[big], user_public_key=ensure_user_keypair(ctx.keys_dir).public_key,
            workdir=root, url_ttl=3600, threads=8, object_base_url=objects.base_url("r1"),
        )  # fmt: skip
        with sandbox:
            problem = _killed_then_resumed(ctx, sandbox, big, objects, row)
    shutil.rmtree(root, ignore_errors=True)  # a GiB of objects must not linger
    if problem:
        row.note = problem
    row.met = row.values[0] <= TARGET if row.values else None
    return [row]


def _killed_then_resumed(
    ctx: Context, sandbox: Sandbox, big: SandboxFile, objects: CountingObjectServer, row: Row
) -> str:
    """Fill ``row``; return why it has no figure ("" if it has one)."""
    batch = batch_of(sandbox, [big])
    size = sandbox.encrypted_size(big.file_id)
    killed = _run_directory(ctx, "killed")
    command, env = _command(batch, killed)
    part = killed / "downloads" / f"{batch.names[0]}.part"
    written = _kill_when_written(command, env, killed, part, size)
    if written >= size:
        return "failed: the file finished before the kill"
    # A SIGKILLed Snakemake leaves its lock in its working directory (`snakemake --unlock`
    # removes it): the next run starts in a fresh one, with the same output directory.
    resumed = _run_directory(ctx, "resumed")
    shutil.move(killed / "downloads", resumed / "downloads")
    command, env = _command(batch, resumed)
    run = run_measured(command, cwd=resumed, env=env, log=ctx.workdir / "logs" / NAME /
                       "resumed.log")  # fmt: skip
    downloads = resumed / "downloads"
    problem = check_outputs(run, downloads, expect_files(sandbox, [big], envelope=True))
    if problem:
        return problem
    sent = objects.bytes_sent()
    row.values = [sent / size]
    row.note = (
        f"killed with {written / size:.0%} written; {sent / MIB:.0f} MiB sent for a "
        f"{size / MIB:.0f} MiB object; the resumed run took {run.seconds:.1f} s"
    )
    log.info("%s: %s", NAME, row.note)
    return ""


def _run_directory(ctx: Context, name: str) -> Path:
    directory = ctx.workdir / "runs" / NAME / name
    directory.mkdir(parents=True)
    for key in ("key.pub", "key.sec"):
        (directory / key).write_bytes((ctx.keys_dir / key).read_bytes())
    return directory


def _command(batch: Batch, rundir: Path) -> tuple[list[str], dict[str, str]]:
    """``ghga-tasks download --yes --resume`` with the benchmark's config."""
    invocation = ghga_tasks_cli(batch, rundir)
    return [*invocation.command, "--resume"], invocation.env


def _kill_when_written(
    command: list[str], env: dict[str, str], rundir: Path, part: Path, size: int
) -> int:
    """Start the download, SIGKILL its process group once ``KILL_AT`` of the object is
    written; the object bytes written by then (``size`` if it finished first)."""
    process = subprocess.Popen(
        command, cwd=rundir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    written = 0
    while process.poll() is None and written < KILL_AT * size:
        time.sleep(POLL_SECONDS)
        written = _allocated(part)
    if process.poll() is not None:
        return size
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return _allocated(part)


def _allocated(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0
