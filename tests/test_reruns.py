"""The second run, where users live: a changed setting, a file they already had, a typo,
and ghga-tasks used as a module in someone else's Snakefile (examples/consumer), with every
guarantee of the repository's own Snakefile: the run lock, a prompt stop on SIGTERM and
the warning when jobs are not threads. Real Snakemake against the sandbox on loopback."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from consumer_project import BIN, REPO, consumer, environment, run_consumer, start_consumer

from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults

pytestmark = [pytest.mark.snakemake, pytest.mark.slow]

BATCH = [
    SandboxFile("GHGAF1", ".bam", size=150_000, realistic=True),  # a BAM the consumer reads
    SandboxFile("GHGAF2", "", size=60_000),
]
OBJECTS = "/ga4gh/drs/v1/objects"
NO_THREADS = "run with --force-use-threads"


def snakemake(project: Path, sandbox: Sandbox, *config: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(project), "--configfile", str(REPO / "config/config.yaml"),
        "--cores", "1", "--config", "part_size=65536", "read_timeout=5", "range_retries=2",
        *config,
    ]  # fmt: skip
    return subprocess.run(
        command, env=environment(sandbox), capture_output=True, text=True, timeout=300
    )


def report_of(output_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(output_dir / "ghga_report.tsv", sep="\t", dtype=str, keep_default_na=False)
    return frame.set_index("file_id")


# --- re-runs of the repository's Snakefile -----------------------------------------------------


def test_a_changed_setting_neither_cancels_nor_downloads_again(sandbox_factory, project) -> None:
    sandbox = sandbox_factory(BATCH)
    first = snakemake(project, sandbox)
    assert first.returncode == 0, first.stderr[-3000:]
    downloads = project / "downloads"
    before = {p.name: p.stat().st_mtime_ns for p in downloads.glob("*.c4gh")}
    sandbox.requests.clear()

    again = snakemake(project, sandbox, "connections=2")  # the plan re-runs: new params
    assert again.returncode == 0, again.stderr[-3000:]
    assert "plan_downloads" in again.stderr  # it really re-planned ...
    assert sandbox.requests.matching(path_prefix=OBJECTS) == []  # ... and asked for nothing
    assert {p.name: p.stat().st_mtime_ns for p in downloads.glob("*.c4gh")} == before
    report = report_of(downloads)
    assert set(report["outcome"]) == {"downloaded"}
    assert all(report["sha256"]) and all(report["content_sha256"])  # carried forward
    plan = pd.read_csv(downloads / "ghga_plan.tsv", sep="\t", dtype=str)
    assert set(plan["status"]) == {"downloaded"}


def test_a_file_ghga_tasks_did_not_write_is_never_reported_as_downloaded(
    sandbox_factory, project
) -> None:
    sandbox = sandbox_factory(BATCH)
    downloads = project / "downloads"
    downloads.mkdir()
    (downloads / "GHGAF1.bam.c4gh").write_bytes(b"x\n")  # echo x > ...

    cancelled = snakemake(project, sandbox)  # skip_downloaded: false (the default)
    assert cancelled.returncode != 0
    log = (downloads / "logs/plan_downloads.log").read_text()
    assert "present, not verified: not written by ghga-tasks" in log
    assert (downloads / "GHGAF1.bam.c4gh").read_bytes() == b"x\n"

    skipped = snakemake(project, sandbox, "skip_downloaded=true")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    row = report_of(downloads).loc["GHGAF1"]
    assert row["outcome"] == "skipped_downloaded" and row["sha256"] == ""
    assert "present, not verified" in row["error"]
    assert (downloads / "GHGAF1.bam.c4gh").read_bytes() == b"x\n"  # never touched


def test_a_downloaded_file_changed_afterwards_is_no_longer_vouched_for(
    sandbox_factory, project
) -> None:
    sandbox = sandbox_factory(BATCH)
    assert snakemake(project, sandbox).returncode == 0
    target = project / "downloads/GHGAF2.c4gh"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1  # same size, one bit flipped
    target.write_bytes(bytes(data))
    run = snakemake(project, sandbox, "connections=3")
    assert run.returncode != 0  # not ours any more: the skip policy decides (cancel)
    log = (project / "downloads/logs/plan_downloads.log").read_text()
    assert "GHGAF2.c4gh: present, not verified: changed since ghga-tasks wrote it" in log


@pytest.mark.parametrize("typo", ["skip_downloded=true", "verfy=true"])
def test_a_typo_in_a_config_key_names_the_nearest_key(sandbox_factory, project, typo) -> None:
    sandbox = sandbox_factory(BATCH[:1])
    run = snakemake(project, sandbox, typo)
    assert run.returncode != 0
    key, nearest = typo.split("=")[0], {"skip_downloded": "skip_downloaded", "verfy": "verify"}
    assert f"unknown key '{key}'; did you mean {nearest[key]}?" in run.stderr
    assert not (project / "downloads").exists()  # nothing ran


def test_a_typo_in_the_cli_config_file_is_exit_2(sandbox_factory, project) -> None:
    sandbox = sandbox_factory(BATCH[:1])
    (project / "my.yaml").write_text("skip_unavailble: true\n")
    run = subprocess.run(
        [str(BIN / "ghga-tasks"), "download", "--yes", "--config-file", "my.yaml"],
        cwd=project, env=environment(sandbox), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "Error: my.yaml: unknown key 'skip_unavailble'; did you mean skip_unavailable?"
    )


# --- ghga-tasks as a module: examples/consumer -------------------------------------------------


SLOW = [SandboxFile("GHGAF1", ".bam", size=4_000_000)]  # 62 ranges at 0.3 s: ~20 s


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_module_consumer_stops_a_download_at_once_on_sigterm(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    sandbox = sandbox_factory(SLOW)
    sandbox.set_faults("GHGAF1", Faults(delay_seconds=0.3))
    directory = consumer(tmp_path, user_keys, "consumer")
    process = start_consumer(directory, sandbox)
    part = directory / "downloads/GHGAF1.bam.c4gh.part"
    wait_for(part, process)
    time.sleep(0.5)  # well inside the file
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    while part.exists() and time.monotonic() - signalled < 15:
        time.sleep(0.02)
    stopped_after = time.monotonic() - signalled
    record_property("part_removed_after_seconds", round(stopped_after, 2))
    process.communicate(timeout=120)
    assert process.returncode != 0
    # The file needs ~20 s more; a download that ran on would still hold its .part here.
    assert not part.exists(), f".part still there {stopped_after:.1f} s after SIGTERM"
    assert not (directory / "downloads/GHGAF1.bam.c4gh").exists()
    log = (directory / "downloads/logs/download/GHGAF1.bam.c4gh.log").read_text()
    assert "interrupted: no partial file was kept" in log


def test_module_consumer_second_run_into_the_same_directory_is_refused(
    sandbox_factory, user_keys, tmp_path
) -> None:
    sandbox = sandbox_factory(SLOW)
    sandbox.set_faults("GHGAF1", Faults(delay_seconds=0.3))
    shared = tmp_path / "shared-downloads"
    first_project = consumer(tmp_path, user_keys, "first", output_dir=shared)
    second_project = consumer(tmp_path, user_keys, "second", output_dir=shared)
    first = start_consumer(first_project, sandbox)
    try:
        wait_for(shared / "GHGAF1.bam.c4gh.part", first)
        plan_before = (shared / "ghga_plan.tsv").read_bytes()
        second = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "1"], cwd=second_project,
            env=environment(sandbox), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode != 0
        holder = f"another ghga-tasks run is downloading into this directory (process {first.pid}"
        assert holder in second.stderr, second.stderr[-3000:]
        assert "Traceback" not in second.stderr  # one line, not Snakemake's exception block
        assert (shared / "ghga_plan.tsv").read_bytes() == plan_before  # nothing rewritten
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)


@pytest.mark.parametrize("threads", [True, False], ids=["profile", "no-profile"])
def test_module_consumer_warns_exactly_when_jobs_are_not_threads(
    sandbox_factory, user_keys, tmp_path, threads
) -> None:
    sandbox = sandbox_factory(BATCH[:1])
    directory = consumer(tmp_path, user_keys, "consumer")
    args = () if threads else ("--workflow-profile", "none")
    run = run_consumer(directory, sandbox, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (NO_THREADS in run.stderr) is not threads
    assert run.stderr.count(NO_THREADS) <= 1  # once, not once per job
    summary = run.stderr[run.stderr.index("Summary:") :].splitlines()  # at the end, once
    assert summary[1].split()[:2] == ["GHGAF1.bam.c4gh", "downloaded"]
    assert summary[-1].startswith("Report: /") and summary[-1].endswith("downloads/ghga_report.tsv")


CLI_DOWNLOAD = [str(BIN / "ghga-tasks"), "download", "--yes", "--config", "part_size=65536"]


def test_second_cli_run_beside_a_running_one_is_refused_before_it_writes(
    sandbox_factory, project
) -> None:
    sandbox = sandbox_factory(SLOW)
    sandbox.set_faults("GHGAF1", Faults(delay_seconds=0.3))
    first = subprocess.Popen(
        CLI_DOWNLOAD, cwd=project, env=environment(sandbox), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(project / "downloads/GHGAF1.bam.c4gh.part", first)
        plan = project / "downloads/ghga_plan.tsv"
        plan_before = (plan.read_bytes(), plan.stat().st_mtime_ns)
        second = subprocess.run(
            CLI_DOWNLOAD, cwd=project, env=environment(sandbox), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.startswith("Error: ") and second.stderr.count("\n") == 1
        assert "another ghga-tasks run is downloading into this directory" in second.stderr
        assert f"(process {first.pid} on " in second.stderr  # who holds it
        assert (plan.read_bytes(), plan.stat().st_mtime_ns) == plan_before  # not re-planned
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)


def test_the_cli_runs_again_after_it_was_killed_mid_file(sandbox_factory, project) -> None:
    """SIGKILL (the OOM killer, a node going down) leaves Snakemake's own lock in the
    working directory; our run lock already keeps a second run out, so the next run must
    not trip over the stale one."""
    sandbox = sandbox_factory(SLOW)
    sandbox.set_faults("GHGAF1", Faults(delay_seconds=0.3))
    first = subprocess.Popen(
        CLI_DOWNLOAD, cwd=project, env=environment(sandbox), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(project / "downloads/GHGAF1.bam.c4gh.part", first)
    first.kill()
    first.communicate(timeout=60)
    sandbox.set_faults("GHGAF1", Faults())

    again = subprocess.run(
        CLI_DOWNLOAD, cwd=project, env=environment(sandbox), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert (project / "downloads/GHGAF1.bam.c4gh").exists()
    assert not (project / "downloads/GHGAF1.bam.c4gh.part").exists()


def test_a_second_cli_run_says_there_is_nothing_to_download(sandbox_factory, project) -> None:
    sandbox = sandbox_factory(BATCH)
    run = functools.partial(
        subprocess.run, CLI_DOWNLOAD, cwd=project, env=environment(sandbox),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"Downloading {len(BATCH)} file(s) to downloads\n" in first.stdout
    again = run()
    assert again.returncode == 0, again.stderr[-2000:]
    done = f"Nothing to download: {len(BATCH)} file(s) already downloaded by an earlier run."
    assert done in again.stdout.splitlines(), again.stdout
