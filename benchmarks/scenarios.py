"""The six scenarios of issue 7, each returning its result rows.

Sizes come from :class:`Sizes` (the full suite, or tiny ones for ``--smoke``). Ratios are
always against figures measured in the same run (curl's rate from S1) or against the
scenario's fixed bar (5 x the per-connection cap in S2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ghga_tasks.sandbox import SandboxFile

from .competitors import (
    ARIA2C,
    CURL,
    CURL_DURABLE,
    GHGA_TASKS,
    OFFICIAL,
    REPO,
    SNAKEMAKE,
    Batch,
    Competitor,
    Invocation,
    base_env,
    write_config,
)  # fmt: skip
from .decrypt import d1_decrypt
from .harness import Context, Entry, Expect, batch_of, expect_files, row_from, run_rounds
from .measure import Run
from .results import MIB, Row
from .wan import s7_wan

GIB = 1024 * MIB
KIB = 1024
OURS = {GHGA_TASKS.name, SNAKEMAKE.name}
WITH_ENVELOPE = {GHGA_TASKS.name, SNAKEMAKE.name, OFFICIAL.name}


@dataclass(frozen=True)
class Sizes:
    big: int = GIB  # S1, S2, the ready file of S3b
    rate: str = "25m"  # nginx limit_rate per connection in S2 (m = MiB/s)
    rate_bytes: int = 25 * MIB
    capped_curl_bytes: int = 256 * MIB  # curl (1 connection) only checks the cap in S2
    small: int = 20 * MIB  # S3b / S3 staging files
    small_count: int = 9  # S3b: the ready file, then this many staging ones; S3: one more
    stage_seconds: float = 5.0
    many_count: int = 1000  # S4
    many_size: int = 64 * KIB
    plan_count: int = 10_000  # S5
    huge: int = 4 * GIB  # S6
    wan_big: int = 200 * MIB  # S7: wan_big_count of these, then wan_small_count small ones
    wan_big_count: int = 4
    wan_small: int = 256 * KIB
    wan_small_count: int = 200
    wan_rtt: float = 0.04  # seconds
    rounds: int = 3
    plan_rounds: int = 1
    staging_rounds: int = 2  # S3b, S3: each run waits for staging
    many_rounds: int = 1


FULL = Sizes()
SMOKE = Sizes(
    big=8 * MIB, rate="2m", rate_bytes=2 * MIB, capped_curl_bytes=2 * MIB, small=256 * KIB,
    small_count=2, stage_seconds=2.0, many_count=4, plan_count=20, huge=16 * MIB,
    wan_big=4 * MIB, wan_big_count=2, wan_small=64 * KIB, wan_small_count=10,
    rounds=1, plan_rounds=1, many_rounds=1, staging_rounds=1,
)  # fmt: skip


def transfer_files(sizes: Sizes) -> tuple[SandboxFile, list[SandboxFile], list[SandboxFile]]:
    """The big ready file, the S3b staging files and the S3 staging files."""
    big = SandboxFile("GHGAF00000000000001", ".bam", sizes.big)
    staging = [
        SandboxFile(f"GHGAF{100 + n:014d}", ".fastq.gz", sizes.small, sizes.stage_seconds)
        for n in range(sizes.small_count + sizes.small_count + 1)
    ]
    return big, staging[: sizes.small_count], staging[sizes.small_count :]


def transfer_sandbox(ctx: Context, sizes: Sizes) -> Any:
    big, s3b, s3 = transfer_files(sizes)
    return ctx.sandbox("transfer", [big, *s3b, *s3])


def entries(
    ctx: Context, competitors: Sequence[Competitor], files: Sequence[SandboxFile], **options: Any
) -> list[Entry]:
    sandbox = transfer_sandbox_or(ctx, files)
    batch = batch_of(sandbox, files, **options)
    return [
        Entry(c, batch, expect_files(sandbox, files, envelope=c.name in WITH_ENVELOPE))
        for c in competitors
    ]


def transfer_sandbox_or(ctx: Context, files: Sequence[SandboxFile]) -> Any:
    for sandbox in ctx.sandboxes.values():
        if all(spec.file_id in sandbox.archive.specs for spec in files):
            return sandbox
    raise LookupError("no sandbox holds these files")


def rate_mbs(size: int) -> Any:
    return lambda run: size / run.seconds / 1e6


def s1_unlimited(ctx: Context, sizes: Sizes) -> list[Row]:
    """One big file, no rate limit. The bar is curl followed by an fsync of the file
    (durable, as ours is); plain curl, which leaves the bytes in the page cache, is the
    second reference."""
    big, _, _ = transfer_files(sizes)
    transfer_sandbox(ctx, sizes)
    competitors = [CURL_DURABLE, CURL, ARIA2C, GHGA_TASKS, SNAKEMAKE, OFFICIAL]
    outcome = run_rounds(ctx, "S1", entries(ctx, competitors, [big]))
    rows = [
        row_from("S1", c.name, outcome[c.name], "throughput", "MB/s", rate_mbs(sizes.big))
        for c in competitors
    ]
    rows += transfer_only_rows("S1", competitors, outcome, sizes.big)
    for row in rows:  # S6 checks that memory stays flat from this file to its bigger one
        if row.peak_rss_mib is not None:
            ctx.facts[f"S1 peak RSS {row.competitor}"] = row.peak_rss_mib
    durable_rate, curl_rate = rows[0].median, rows[1].median
    if curl_rate:
        ctx.facts["curl_rate"] = curl_rate * 1e6  # S3b/S3's ideal, as before
    if durable_rate:
        for row in rows[1:]:
            _ratio(row, durable_rate, "curl + fsync")
            target = S1_TARGETS.get(row.competitor)
            if target is not None:
                met = row.ratio is not None and row.ratio >= target
                _target(row, f"≥ {target} x curl + fsync", met)
    return rows


S1_TARGETS = {  # over durable curl: moving the bytes, then each whole run as users wait
    f"{GHGA_TASKS.name}: transfer only": 0.95,
    f"{SNAKEMAKE.name}: transfer only": 0.95,
    GHGA_TASKS.name: 0.75,
    SNAKEMAKE.name: 0.6,
}


def transfer_only_rows(
    scenario: str, competitors: Sequence[Competitor], outcome: dict[str, Any], size: int
) -> list[Row]:
    """Our competitors' rates from their own report (seconds moving bytes), without
    process start-up, plan or Snakemake: where the time goes, not a competitor."""
    rows = []
    for competitor in competitors:
        if competitor.name not in OURS or isinstance(outcome[competitor.name], str):
            continue
        row = row_from(
            scenario, f"{competitor.name}: transfer only", outcome[competitor.name],
            "throughput", "MB/s", lambda run: size / (run.transfer_seconds or math.nan) / 1e6,
        )  # fmt: skip
        row.note = "size / the report's seconds: no start-up, plan or Snakemake"
        rows.append(row)
    return rows


def s2_capped(ctx: Context, sizes: Sizes) -> list[Row]:
    """The same file at ``rate`` per connection: multi-connection scaling, bar 5 x cap."""
    big, _, _ = transfer_files(sizes)
    sandbox = transfer_sandbox(ctx, sizes)
    unlimited = sandbox.archive.object_base_url
    sandbox.archive.object_base_url = ctx.objects.base_url("capped", 0)
    try:
        competitors = [ARIA2C, GHGA_TASKS, SNAKEMAKE, OFFICIAL]
        runs = entries(ctx, competitors, [big])
        curl_entry = entries(ctx, [CURL], [big], curl_range=f"0-{sizes.capped_curl_bytes - 1}")[0]
        curl_entry = Entry(
            CURL, curl_entry.batch, Expect({runs[0].batch.names[0]: sizes.capped_curl_bytes})
        )
        outcome = run_rounds(ctx, "S2", [curl_entry, *runs])
    finally:
        sandbox.archive.object_base_url = unlimited
    cap = sizes.rate_bytes / 1e6
    rows = [
        row_from(
            "S2",
            CURL.name,
            outcome[CURL.name],
            "throughput",
            "MB/s",
            rate_mbs(sizes.capped_curl_bytes),
        )
    ]
    _ratio(rows[0], cap, "cap (1 connection)")
    for competitor in competitors:
        row = row_from(
            "S2",
            competitor.name,
            outcome[competitor.name],
            "throughput",
            "MB/s",
            rate_mbs(sizes.big),
        )
        _ratio(row, 5 * cap, "5 x cap")
        if competitor.name in OURS:
            _target(row, "≥ 0.95 x (5 x cap)", row.ratio is not None and row.ratio >= 0.95)
        rows.append(row)
    rows += transfer_only_rows("S2", competitors, outcome, sizes.big)
    for row in rows[-len(OURS) :]:
        if row.competitor.endswith("transfer only"):
            _ratio(row, 5 * cap, "5 x cap")
    return rows


def s3_staging(ctx: Context, sizes: Sizes, *, with_ready: bool) -> list[Row]:
    """S3b: the ready big file first, then staging files; S3: staging files only.

    Ideal: every file probed at once, so staging overlaps the big download; then the
    staged files at curl's single-stream rate (measured in S1 of this run).
    """
    scenario = "S3b" if with_ready else "S3"
    big, s3b, s3 = transfer_files(sizes)
    sandbox = transfer_sandbox(ctx, sizes)
    files = [big, *s3b] if with_ready else s3
    competitors = [GHGA_TASKS, SNAKEMAKE, OFFICIAL]
    outcome = run_rounds(
        ctx,
        scenario,
        entries(ctx, competitors, files),
        before_each=sandbox.archive.reset_staging,
        rounds=min(sizes.rounds, sizes.staging_rounds),
    )
    rate = ctx.facts.get("curl_rate") or _curl_rate(ctx, sizes)
    staging_bytes = sum(spec.size for spec in files if spec.stage_seconds)
    ready_seconds = (big.size / rate) if with_ready else 0.0
    ideal = max(sizes.stage_seconds, ready_seconds) + staging_bytes / rate
    rows = []
    for competitor in competitors:
        row = row_from(scenario, competitor.name, outcome[competitor.name], "time", "s", _seconds)
        _ratio(row, ideal, f"ideal {ideal:.2f} s", inverse=True)
        if competitor.name in OURS and with_ready:
            _target(row, "≤ 1.1 x ideal", row.ratio is not None and row.ratio <= 1.1)
        rows.append(row)
    return rows


def _curl_rate(ctx: Context, sizes: Sizes) -> float:
    """curl's single-stream rate, when S1 did not run in this invocation."""
    big, _, _ = transfer_files(sizes)
    outcome = run_rounds(ctx, "S3-rate", entries(ctx, [CURL], [big]), rounds=1)
    runs = outcome[CURL.name]
    if isinstance(runs, str) or not runs:
        raise RuntimeError(f"curl is needed for the ideal time: {runs}")
    ctx.facts["curl_rate"] = sizes.big / runs[0].seconds
    return ctx.facts["curl_rate"]


def _ms_per_file(run: Run, count: int) -> float:
    return run.seconds * 1000 / count


def _ms_at(run: Run, *, mark: int, window: int) -> float:
    return per_file_ms(run.finished_at, mark, window)


def _seconds(run: Run) -> float:
    return run.seconds


S4_TARGETS = {GHGA_TASKS.name: 18, SNAKEMAKE.name: 24}  # ms per file (issue 15)


def s4_many_small(ctx: Context, sizes: Sizes) -> list[Row]:
    """Many small files: per-file overhead. curl fetches them all in one process."""
    files = [
        SandboxFile(f"GHGAF{n:014d}", ".bam", sizes.many_size)
        for n in range(1, sizes.many_count + 1)
    ]
    ctx.sandbox("many", files)
    competitors = [CURL, SNAKEMAKE, GHGA_TASKS, OFFICIAL]
    outcome = run_rounds(ctx, "S4", entries(ctx, competitors, files), rounds=sizes.many_rounds)
    rows = []
    for competitor in competitors:
        row = row_from(
            "S4", competitor.name, outcome[competitor.name], "per file", "ms/file",
            partial(_ms_per_file, count=len(files)),
        )  # fmt: skip
        target = S4_TARGETS.get(competitor.name)
        if target is not None:
            met = row.median is not None and row.median <= target
            _target(row, f"≤ {target} ms/file", met)
        rows.append(row)
    ctx.drop_sandbox("many")
    return rows


SCALE_FACTOR = 10  # S8: ten times S4's count (10,000 files; 40 with --smoke)
SCALE_MARKS = (1, 4, 10)  # S8 reports the cost per file at these multiples of S4's count
SCALE_SIZE = 4 * KIB


def per_file_ms(finished: Sequence[float], position: int, window: int) -> float:
    """The cost per file around the ``position``-th file to finish (1-based): the time the
    ``window`` files up to it took, per file. Start-up and plan are not in it."""
    last = min(position, len(finished)) - 1
    first = max(last - window, 0)
    if last <= first:
        return math.nan
    return (finished[last] - finished[first]) * 1000 / (last - first)


def s8_scale(ctx: Context, sizes: Sizes) -> list[Row]:
    """Many tiny files: does the cost per file stay flat as the batch grows (issue 17)?

    One run per front end; the cost per file at the 1,000th, 4,000th and 10,000th file
    comes from the finish times in its report. A scheduler that weighs every waiting file
    makes the *early* files dear (10,000 wait at the start, none at the end), so the two
    ends are held to each other both ways.
    """
    count = SCALE_FACTOR * sizes.many_count
    files = [SandboxFile(f"GHGAF{n:014d}", ".fastq.gz", SCALE_SIZE) for n in range(1, count + 1)]
    ctx.sandbox("many", files)  # S4's object root: S4 has dropped its sandbox by now
    competitors = [SNAKEMAKE, GHGA_TASKS]
    outcome = run_rounds(ctx, "S8", entries(ctx, competitors, files), rounds=sizes.many_rounds)
    window = max(sizes.many_count // 2, 2)
    marks = [factor * sizes.many_count for factor in SCALE_MARKS]
    rows = []
    for competitor in competitors:
        runs = outcome[competitor.name]
        total = row_from(
            "S8", competitor.name, runs, "per file", "ms/file",
            partial(_ms_per_file, count=count),
        )  # fmt: skip
        if total.ran:
            total.note = "whole run / files: start-up and plan included"
        rows.append(total)
        at = {}
        for mark in marks:
            row = row_from(
                "S8", f"{competitor.name} @{mark:,}", runs, "per file", "ms/file",
                partial(_ms_at, mark=mark, window=window),
            )  # fmt: skip
            if row.ran:
                row.note = f"files {max(mark - window, 1):,}-{mark:,} of one run"
            at[mark] = row
            rows.append(row)
        first, last = at[marks[0]], at[marks[-1]]
        if first.median and last.median:
            _ratio(last, first.median, f"@{marks[0]:,}")
            _ratio(first, last.median, f"@{marks[-1]:,}")
            for row, other in ((last, marks[0]), (first, marks[-1])):
                _target(row, f"≤ 1.2 x @{other:,}", row.ratio is not None and row.ratio <= 1.2)
        if not isinstance(runs, str) and runs:
            ctx.curves[competitor.name] = runs[0].finished_at
    ctx.drop_sandbox("many")
    return rows


def plan_and_dag(snakefile: Path) -> Callable[[Batch, Path], Invocation]:
    """The checkpoint (probe everything, write the plan), then the DAG of all downloads."""

    def build(batch: Batch, workdir: Path) -> Invocation:
        config = write_config(batch, workdir)
        snakemake = f"python -m snakemake --snakefile {snakefile} --directory {workdir}"
        options = f"--cores 1 --configfile {config}"
        script = f"{snakemake} downloads/ghga_plan.tsv {options} && {snakemake} -n {options}"
        return Invocation(["bash", "-c", script], base_env(batch.env))

    return build


def ghga_tasks_plan(batch: Any, workdir: Any) -> Invocation:
    config = write_config(batch, workdir)
    return Invocation(["ghga-tasks", "plan", "--config-file", str(config)], base_env(batch.env))


PLAN_DAG = Competitor("snakemake: checkpoint + DAG", plan_and_dag(REPO / "Snakefile"), lambda: "")
PLAN_CLI = Competitor("ghga-tasks plan", ghga_tasks_plan, lambda: "")


def s5_plan(ctx: Context, sizes: Sizes) -> list[Row]:
    """The plan for many files: probing them all, then Snakemake's DAG of their jobs."""
    files = [SandboxFile(f"GHGAF{n:014d}", ".cram", 1024) for n in range(1, sizes.plan_count + 1)]
    ctx.sandbox("plan", files)
    competitors = [PLAN_DAG, PLAN_CLI]
    plan_entries = [
        Entry(entry.competitor, entry.batch, Expect({"ghga_plan.tsv": -1}))
        for entry in entries(ctx, competitors, files)
    ]
    outcome = run_rounds(ctx, "S5", plan_entries, rounds=sizes.plan_rounds)
    rows = [row_from("S5", c.name, outcome[c.name], "time", "s", _seconds) for c in competitors]
    for row in rows[:1]:
        _target(row, "≤ 60 s", row.median is not None and row.median <= 60)
    rows.append(
        Row("S5", OFFICIAL.name, "time", "s", note="not comparable: no plan step (probes lazily)")
    )
    ctx.drop_sandbox("plan")
    return rows


def s6_memory(ctx: Context, sizes: Sizes) -> list[Row]:
    """Peak memory for one huge file (largest single process; tree sum in brackets): a
    quarter of the official client's at most, and flat: no more than for S1's file."""
    huge = SandboxFile("GHGAF00000000000004", ".cram", sizes.huge)
    ctx.sandbox("memory", [huge])
    competitors = [CURL, GHGA_TASKS, SNAKEMAKE, OFFICIAL]
    outcome = run_rounds(ctx, "S6", entries(ctx, competitors, [huge]), rounds=1)
    rows = []
    for competitor in competitors:
        row = row_from("S6", competitor.name, outcome[competitor.name], "peak RSS", "MiB",
                       lambda run: run.peak_rss / MIB)  # fmt: skip
        rows.append(row)
    official = rows[-1].median
    for row in rows:
        if row.competitor not in OURS or row.median is None:
            continue
        smaller = ctx.facts.get(f"S1 peak RSS {row.competitor}")
        flat = f", ≤ 1.1 x S1's {smaller:.0f} MiB" if smaller else ""
        met = smaller is None or row.median <= 1.1 * smaller
        row.target = f"≤ 0.25 x {OFFICIAL.name}{flat}"
        if official:  # without the official client's figure there is nothing to judge
            _ratio(row, official, OFFICIAL.name)
            row.met = met and row.median <= 0.25 * official
    ctx.drop_sandbox("memory")
    return rows


def _ratio(row: Row, baseline: float, name: str, *, inverse: bool = False) -> None:
    """Median over ``baseline`` (throughput), or over the ideal for times (``inverse``:
    the ratio is still median / baseline, where lower is better)."""
    if row.median is not None and baseline:
        row.ratio = row.median / baseline
        row.baseline = name


def _target(row: Row, target: str, met: bool) -> None:
    row.target = target
    row.met = met if row.ran else None


# What --smoke runs: every scenario, but only the shipped workflow and the references,
# so the script is exercised end to end in about a minute.
SMOKE_COMPETITORS = {CURL.name, CURL_DURABLE.name, ARIA2C.name, SNAKEMAKE.name, PLAN_DAG.name}
DOWNLOADERS = (CURL, CURL_DURABLE, ARIA2C, GHGA_TASKS, SNAKEMAKE, OFFICIAL)
ALL_COMPETITORS = {c.name for c in (*DOWNLOADERS, PLAN_DAG, PLAN_CLI)}

SCENARIOS = {
    "S1": s1_unlimited,
    "S2": s2_capped,
    "S3b": lambda ctx, sizes: s3_staging(ctx, sizes, with_ready=True),
    "S3": lambda ctx, sizes: s3_staging(ctx, sizes, with_ready=False),
    "S4": s4_many_small,
    "S5": s5_plan,
    "S6": s6_memory,
    "S7": s7_wan,
    "D1": d1_decrypt,
    "S8": s8_scale,
}
