"""The shared machinery of the scenarios: sandboxes, run directories, alternating rounds."""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from ghga_tasks.sandbox import Sandbox, SandboxFile, ensure_user_keypair
from ghga_tasks.sandbox.files import ENVELOPE_SIZE
from ghga_tasks.sandbox.wps import files_of

from .competitors import Batch, Competitor
from .measure import Run, run_measured
from .objectserver import ObjectServer
from .results import MIB, Row

log = logging.getLogger("benchmarks")
T = TypeVar("T")

MAX_ARG_STRLEN = 128 * 1024  # Linux's limit for one environment variable
SANDBOX_ROOTS = ("transfer", "many", "plan", "memory", "wan")  # one nginx alias per sandbox


@dataclass
class Context:
    """Everything scenarios share in one benchmark run."""

    workdir: Path
    rounds: int
    objects: ObjectServer
    keys_dir: Path
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    facts: dict[str, float] = field(default_factory=dict)  # e.g. curl's rate from S1
    skip: dict[str, str] = field(default_factory=dict)  # competitor -> "not run: why"
    curves: dict[str, tuple[float, ...]] = field(default_factory=dict)  # S8: finish times

    def sandbox(self, root: str, files: Sequence[SandboxFile]) -> Sandbox:
        """The sandbox for ``root`` (built on first use; objects served by nginx)."""
        if root not in self.sandboxes:
            keys = ensure_user_keypair(self.keys_dir)
            log.info("generating %d file(s) for the %r sandbox", len(files), root)
            # Production defaults on purpose: every competitor takes its work order tokens
            # from the WPS (curl and aria2c get presigned URLs directly), and staging files
            # get GHGA's Retry-After (5 s at least), which every client has to live with.
            sandbox = Sandbox(
                files=files,
                user_public_key=keys.public_key,
                workdir=self.sandbox_dir(root),
                url_ttl=3600,
                threads=8,
                object_base_url=self.objects.base_url("unlimited", SANDBOX_ROOTS.index(root)),
            )
            self.sandboxes[root] = sandbox.start()
        return self.sandboxes[root]

    def sandbox_dir(self, root: str) -> Path:
        return self.workdir / f"sandbox-{root}"

    def drop_sandbox(self, root: str) -> None:
        """Stop a sandbox and delete its data (the 4 GiB one must not linger)."""
        sandbox = self.sandboxes.pop(root, None)
        if sandbox is not None:
            sandbox.stop()
        shutil.rmtree(self.sandbox_dir(root), ignore_errors=True)

    def close(self) -> None:
        for root in list(self.sandboxes):
            self.drop_sandbox(root)


def batch_of(sandbox: Sandbox, files: Sequence[SandboxFile], **options: object) -> Batch:
    """A batch of ``files``: env work package and a freshly minted WPS token for them."""
    minted = sandbox.work_packages.mint(files_of(files), sandbox.user_public_key)
    env = {
        **sandbox.env(),
        "GHGA_FILE_IDS": ",".join(spec.file_id for spec in files),
        "GHGA_FILE_EXTENSIONS": ",".join(spec.extension for spec in files),
        "GHGA_DOWNLOAD_TOKEN": minted.download_token,
    }
    if len(env["GHGA_FILE_IDS"]) >= MAX_ARG_STRLEN:
        # Linux refuses to start a program with a longer variable (E2BIG). The benchmark
        # uses the WPS source, which does not need it; env-mode users would hit this.
        log.warning("GHGA_FILE_IDS would be %d bytes: left out", len(env["GHGA_FILE_IDS"]))
        del env["GHGA_FILE_IDS"], env["GHGA_FILE_EXTENSIONS"]
    batch = Batch(
        names=[f"{spec.file_id}{spec.extension}.c4gh" for spec in files],
        urls=[sandbox.presigned_url(spec.file_id, ttl=3600) for spec in files],
        env=env,
        download_token=minted.download_token,
    )
    return replace(batch, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Expect:
    """What a finished run must have left in ``downloads/``: name -> size in bytes."""

    sizes: dict[str, int]


def expect_files(sandbox: Sandbox, files: Sequence[SandboxFile], *, envelope: bool) -> Expect:
    extra = ENVELOPE_SIZE if envelope else 0
    return Expect(
        {
            f"{spec.file_id}{spec.extension}.c4gh": sandbox.encrypted_size(spec.file_id) + extra
            for spec in files
        }
    )


def check_outputs(run: Run, downloads: Path, expect: Expect) -> str:
    """Why the run does not count ("" if it does): exit code, missing or wrong files."""
    if run.returncode != 0:
        tail = run.log.read_text(errors="replace").strip().splitlines()[-3:]
        return f"failed: exit {run.returncode}: {' / '.join(tail)[:300]}"
    for name, size in expect.sizes.items():
        path = downloads / name
        if not path.is_file():
            return f"failed: {name} missing"
        if size >= 0 and path.stat().st_size != size:
            return f"failed: {name} has {path.stat().st_size} bytes, expected {size}"
    return ""


@dataclass(frozen=True)
class Entry:
    """One competitor in a scenario: its batch and what a successful run leaves."""

    competitor: Competitor
    batch: Batch
    expect: Expect


def run_rounds(
    ctx: Context,
    scenario: str,
    entries: Sequence[Entry],
    *,
    before_each: Callable[[], None] = lambda: None,
    rounds: int | None = None,
) -> dict[str, list[Run] | str]:
    """Run the competitors alternately for ``rounds``; per competitor its runs or why not.

    A run can leave the machine slower for whoever follows it (S1: the disk after
    aria2c's deleted gigabyte). The order changes every round (see ``_order``), so in
    three rounds nobody follows the same competitor twice and no median is biased."""
    outcome: dict[str, list[Run] | str] = {}
    for entry in entries:
        reason = ctx.skip.get(entry.competitor.name) or entry.competitor.available()
        outcome[entry.competitor.name] = reason if reason else []
    for round_number in range(rounds or ctx.rounds):
        for entry in _order(entries, round_number):
            runs = outcome[entry.competitor.name]
            if isinstance(runs, str):
                continue  # not available, or failed in an earlier round
            before_each()
            result = _one_run(ctx, scenario, entry, round_number)
            outcome[entry.competitor.name] = result if isinstance(result, str) else [*runs, result]
    return outcome


def _order(entries: Sequence[T], round_number: int) -> list[T]:
    """As given; reversed; every other one, then the rest. A rotation would not do: it
    keeps everyone's predecessor."""
    kind = round_number % 3
    if kind == 1:
        return list(reversed(entries))
    if kind == 2:
        return [*entries[::2], *entries[1::2]]
    return list(entries)


def _one_run(ctx: Context, scenario: str, entry: Entry, round_number: int) -> Run | str:
    name = entry.competitor.name
    slug = "".join(c if c.isalnum() else "-" for c in name)
    rundir = ctx.workdir / "runs" / scenario / f"{slug}-{round_number}"
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir(parents=True)
    for key in ("key.pub", "key.sec"):
        shutil.copy(ctx.keys_dir / key, rundir / key)
    invocation = entry.competitor.build(entry.batch, rundir)
    run = run_measured(
        invocation.command,
        cwd=rundir,
        env=invocation.env,
        log=ctx.workdir / "logs" / scenario / f"{slug}-{round_number}.log",
        stdin_text=invocation.stdin_text,
    )
    problem = check_outputs(run, rundir / "downloads", entry.expect)
    report = rundir / "downloads" / "ghga_report.tsv"
    run = replace(run, transfer_seconds=transfer_seconds(report), finished_at=finish_times(report))
    if report.exists():  # kept beside the log: where each file's time went
        shutil.copy(report, ctx.workdir / "logs" / scenario / f"{slug}-{round_number}.report.tsv")
    shutil.rmtree(rundir, ignore_errors=True)  # downloads can be gigabytes
    # The next competitor starts on a quiet disk: a download that never syncs (curl,
    # aria2c) must not leave its writeback to slow the next one's fsync.
    os.sync()
    log.info(
        "%s %-24s round %d: %.2f s, peak RSS %.0f MiB%s",
        scenario, name, round_number + 1, run.seconds, run.peak_rss / MIB,
        f" ({problem})" if problem else "",
    )  # fmt: skip
    return problem or run


def transfer_seconds(report: Path) -> float | None:
    """The time our tool spent moving bytes (from its report), without start-up costs."""
    if not report.is_file():
        return None
    with report.open() as stream:
        return sum(float(row["seconds"] or 0) for row in csv.DictReader(stream, delimiter="\t"))


def finish_times(report: Path) -> tuple[float, ...]:
    """When each downloaded file got its final name (wall clock), in order (S8)."""
    if not report.is_file():
        return ()
    with report.open() as stream:
        rows = csv.DictReader(stream, delimiter="\t")
        return tuple(sorted(float(r["finished_at"]) for r in rows if r["finished_at"]))


def row_from(
    scenario: str, name: str, runs: list[Run] | str, metric: str, unit: str,
    value: Callable[[Run], float],
) -> Row:  # fmt: skip
    """A row with one value per run, or the reason it has none."""
    row = Row(scenario, name, metric, unit)
    if isinstance(runs, str):
        row.note = runs
        return row
    row.values = [value(run) for run in runs]
    row.peak_rss_mib = max(run.peak_rss for run in runs) / MIB
    row.tree_rss_mib = max(run.tree_rss for run in runs) / MIB
    return row
