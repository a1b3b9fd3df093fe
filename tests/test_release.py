"""Download jobs released to Snakemake a batch at a time (ghga_tasks/core/release.py,
issue 17): the files still go one at a time in plan order, a failed file blocks none after
it, Snakemake only ever sees a batch of ready downloads, and a finished file keeps the gate
it waited for, so no later run downloads it again. Real Snakemake against the sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ghga_tasks.core import release, state
from ghga_tasks.core.errors import ConfigurationError
from ghga_tasks.core.plan import PlanEntry, Status, write_plan
from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OBJECTS = "/ga4gh/drs/v1/objects"


def snakemake(
    project: Path, sandbox: Sandbox, *config: str, targets: tuple[str, ...] = (), batch: int = 2
) -> subprocess.CompletedProcess[str]:
    """The repository's Snakefile with its default profile (keep-going), ``batch`` files
    per release, Snakemake's debug lines on (they count the ready jobs)."""
    env = {
        **os.environ,
        **sandbox.env(),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        release.BATCH_VARIABLE: str(batch),
    }
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(project), "--configfile", str(REPO / "config/config.yaml"),
        "--cores", "1", "--verbose", *targets,
        "--config", "part_size=65536", "read_timeout=5", "range_retries=2", *config,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def most_ready_jobs(run: subprocess.CompletedProcess[str]) -> int:
    """The largest ready set Snakemake's scheduler weighed (its --verbose debug line)."""
    counts = [int(n) for n in re.findall(r"Ready jobs: (\d+)", run.stdout + run.stderr)]
    assert counts, "Snakemake no longer logs its ready jobs: find another witness"
    return max(counts)


@pytest.mark.snakemake
@pytest.mark.slow
def test_batches_keep_plan_order_and_a_failed_file_blocks_none_after_it(
    sandbox_factory, project
) -> None:
    # Plan order: the five staged files in input order, then the staging one.
    files = [SandboxFile(f"GHGAF{n}", ".bam", size=30_000) for n in range(1, 6)]
    files.insert(2, SandboxFile("GHGAF9", ".bam", size=30_000, stage_seconds=1))
    sandbox = sandbox_factory(files)
    sandbox.set_faults("GHGAF2", Faults(drop_after_bytes=10_000))  # first batch, second file

    run = snakemake(project, sandbox, batch=2)

    assert run.returncode != 0  # a file failed, and Snakemake says so
    downloads = project / "downloads"
    report = pd.read_csv(downloads / "ghga_report.tsv", sep="\t", dtype=str, keep_default_na=False)
    outcomes = dict(zip(report["file_id"], report["outcome"], strict=True))
    assert outcomes.pop("GHGAF2") == "failed"
    assert set(outcomes.values()) == {"downloaded"}  # every file after it, in three batches
    started = report[report["outcome"] == "downloaded"].astype({"started_at": float})
    in_order = list(started.sort_values("started_at")["file_id"])
    assert in_order == ["GHGAF1", "GHGAF3", "GHGAF4", "GHGAF5", "GHGAF9"]
    # Snakemake never weighed more than one batch of downloads and the next release (all
    # six downloads at once without the batches); six files in batches of two: 3 releases.
    assert most_ready_jobs(run) <= 3, run.stderr[-2000:]
    run_name = (downloads / state.STATE_DIR / release.RUN_FILE).read_text().strip()
    released = sorted(p.name for p in (downloads / ".ghga_tasks/release" / run_name).iterdir())
    assert released == ["0", "1", "2"]
    gates = {
        name: json.loads((downloads / ".ghga_tasks/results" / f"{name}.bam.c4gh.json").read_text())[
            "gate"
        ]
        for name in ("GHGAF1", "GHGAF5", "GHGAF9")
    }
    assert gates == {
        "GHGAF1": release.marker(run_name, 0),
        "GHGAF5": release.marker(run_name, 2),
        "GHGAF9": release.marker(run_name, 2),
    }


@pytest.mark.snakemake
@pytest.mark.slow
def test_a_finished_file_keeps_its_gate_in_every_later_run(sandbox_factory, project) -> None:
    """Snakemake re-runs a job whose input files changed: a finished file must be given the
    same gate whatever the run, batch size or plan, or it would be downloaded again."""
    files = [SandboxFile(f"GHGAF{n}", ".bam", size=20_000) for n in range(1, 5)]
    sandbox = sandbox_factory(files)
    first = snakemake(project, sandbox, batch=2)
    assert first.returncode == 0, first.stderr[-3000:]
    downloads = project / "downloads"
    before = {p.name: p.stat().st_mtime_ns for p in downloads.glob("*.c4gh")}
    first_run = (downloads / state.STATE_DIR / release.RUN_FILE).read_text().strip()
    sandbox.requests.clear()

    # Each file as a target of its own (as a rule that reads one file asks for it), in
    # new runs with another batch size, before and after a new plan.
    for args in (["connections=2"], []):
        targets = tuple(f"downloads/{name}" for name in before)
        again = snakemake(project, sandbox, *args, targets=targets, batch=3)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "download_file" not in again.stderr, again.stderr[-3000:]
    replanned = snakemake(project, sandbox, "connections=3", batch=1)
    assert replanned.returncode == 0, replanned.stderr[-3000:]
    assert "plan_downloads" in replanned.stderr and "download_file" not in replanned.stderr

    assert (downloads / state.STATE_DIR / release.RUN_FILE).read_text().strip() != first_run
    assert sandbox.requests.matching(path_prefix=OBJECTS) == []
    assert {p.name: p.stat().st_mtime_ns for p in downloads.glob("*.c4gh")} == before


# --- units ---------------------------------------------------------------------------------


def entry(name: str, status: Status = Status.STAGED) -> PlanEntry:
    return PlanEntry(name.split(".")[0], ".bam", name, status, 0.0, 10, "")


def test_gate_is_the_batch_of_the_plan_position_in_the_current_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(release.BATCH_VARIABLE, "2")
    names = [f"F{n}.bam.c4gh" for n in range(5)]
    assert release.gate(tmp_path, names[0]) == ""  # no plan yet (a dry run)
    write_plan(
        [*map(entry, names), entry("D.bam.c4gh", Status.DOWNLOADED)], tmp_path / "ghga_plan.tsv"
    )
    assert release.current_run(tmp_path) == release.NO_RUN
    run = release.start_run(tmp_path)
    assert release.current_run(tmp_path) == run and run.isalnum()
    assert [release.gate(tmp_path, name) for name in names] == [
        release.marker(run, index) for index in (0, 0, 1, 1, 2)
    ]
    assert release.gate(tmp_path, "D.bam.c4gh") == ""  # nothing to download: no gate
    assert release.start_run(tmp_path) != run  # every run waits anew


def test_a_recorded_gate_wins_and_a_record_without_one_means_none(tmp_path: Path) -> None:
    write_plan([entry("A.bam.c4gh"), entry("B.bam.c4gh")], tmp_path / "ghga_plan.tsv")
    release.start_run(tmp_path)
    state.record_result(tmp_path, "A.bam.c4gh", {"bytes": 1, "gate": ".ghga_tasks/release/x/7"})
    state.record_result(tmp_path, "B.bam.c4gh", {"bytes": 1})  # completed before gates
    assert release.gate(tmp_path, "A.bam.c4gh") == ".ghga_tasks/release/x/7"
    assert release.gate(tmp_path, "B.bam.c4gh") == ""


def test_previous_marker_chains_releases_and_given_gate_is_relative() -> None:
    assert release.previous_marker("r1", 0) == ""
    assert release.previous_marker("r1", 3) == release.marker("r1", 2)
    assert release.given_gate("out/dir", ["out/dir/.ghga_tasks/release/r1/2"]) == (
        ".ghga_tasks/release/r1/2"
    )
    assert release.given_gate("out/dir", []) == ""


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_batch_size_is_a_configuration_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(release.BATCH_VARIABLE, value)
    with pytest.raises(ConfigurationError, match=release.BATCH_VARIABLE):
        release.batch_size()
    monkeypatch.delenv(release.BATCH_VARIABLE)
    assert release.batch_size() == release.BATCH


# --- the CLI's progress watcher, which runs in the process Snakemake runs in ---------------


def test_a_progress_poll_looks_at_the_files_that_ended_not_the_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghga_tasks.cli import progress
    from ghga_tasks.core.errors import Interrupted

    names = [f"F{n}.bam.c4gh" for n in range(1000)]
    watcher = progress.ProgressWatcher(tmp_path, [entry(name) for name in names])
    looked: list[str] = []
    look_at = watcher._look_at
    monkeypatch.setattr(
        watcher, "_look_at", lambda state: looked.append(state.entry.file_name) or look_at(state)
    )

    watcher._poll()
    assert len(looked) <= progress.LOOK_AHEAD + 1  # not 1,000
    for name in names[:3]:
        (tmp_path / name).write_bytes(b"x")
    state.record_failure(tmp_path, names[3], Interrupted())  # failed in this run: passed
    (tmp_path / names[5]).write_bytes(b"x")  # out of order: seen by the look-ahead
    looked.clear()
    watcher._poll()
    assert watcher._done_count() == 4 and watcher._next == 4
    assert len(looked) <= 4 + progress.LOOK_AHEAD + 1
    (tmp_path / names[900]).write_bytes(b"x")  # far out of order: counted at the end
    watcher._poll(everything=True)
    assert watcher._done_count() == 5


def test_downloads_ahead_is_downloads_after_without_the_walk(tmp_path: Path) -> None:
    from ghga_tasks.core.plan import downloads_after, downloads_ahead, read_plan

    names = [f"F{n}.bam.c4gh" for n in range(6)]
    rows = [*map(entry, names), entry("D.bam.c4gh", Status.DOWNLOADED)]
    write_plan(rows, tmp_path / "ghga_plan.tsv")
    entries = read_plan(tmp_path / "ghga_plan.tsv")
    for name in [*names, "D.bam.c4gh", "other.c4gh"]:
        expected = downloads_after(entries, name, 4)
        assert downloads_ahead(tmp_path / "ghga_plan.tsv", name, 4) == expected
    assert downloads_ahead(tmp_path / "ghga_plan.tsv", names[0], 4) == ["F1", "F2", "F3", "F4"]
    (tmp_path / names[2]).write_bytes(b"x")  # finished since the plan (a re-run reuses it)
    assert downloads_ahead(tmp_path / "ghga_plan.tsv", names[0], 4) == ["F1", "F3", "F4", "F5"]
