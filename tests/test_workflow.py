"""The Snakemake workflow, run for real (``python -m snakemake`` in a subprocess) against
the sandbox on loopback."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from crypt4gh import lib

from ghga_tasks.sandbox import SandboxFile
from ghga_tasks.sandbox.faults import Faults

pytestmark = [pytest.mark.snakemake, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

BATCH = [
    SandboxFile("GHGAF1", ".bam", size=200_000),
    SandboxFile("GHGAF2", ".fastq.gz", size=70_000, stage_seconds=2),
    SandboxFile("GHGAF3", "", size=1_000),
    SandboxFile("GHGAF4", "vcf", size=150_000),
]


def snakemake(
    workdir: Path, sandbox, *args: str, snakefile: Path = REPO / "Snakefile", **config: object
) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in ``workdir`` with the sandbox's environment and extra config."""
    settings = {
        "output_dir": "downloads",
        "user_public_key": "key.pub",
        "part_size": 65536,
        "range_retries": 2,
        "read_timeout": 5,
        **config,
    }
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--config",
        *[f"{k}={v}" for k, v in settings.items()],
        *args,
    ]
    if "--configfile" not in args and snakefile == REPO / "Snakefile":
        command += ["--configfile", str(REPO / "config/config.yaml")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def workdir(tmp_path: Path, user_keys) -> Path:
    """A project directory holding the user's key pair, as a researcher would have it."""
    shutil.copy(user_keys.public_key_path, tmp_path / "key.pub")
    shutil.copy(user_keys.secret_key_path, tmp_path / "key.sec")
    return tmp_path


def decrypted(path: Path, secret_key: bytes) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as stream:
        lib.decrypt([(0, secret_key, None)], stream, out)
    return out.getvalue()


def report_of(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(
        workdir / "downloads/ghga_report.tsv", sep="\t", dtype=str, keep_default_na=False
    )


def assert_ok(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stderr[-3000:]


def test_batch_downloads_staged_files_first_and_decrypts(sandbox_factory, workdir, user_keys):
    sandbox = sandbox_factory(BATCH)
    assert_ok(snakemake(workdir, sandbox, "--cores", "1"))
    for spec in BATCH:
        name = f"{spec.file_id}{'.' + spec.extension.lstrip('.') if spec.extension else ''}.c4gh"
        plain = decrypted(workdir / "downloads" / name, user_keys.secret_key)
        assert plain == sandbox.plaintext_path(spec.file_id).read_bytes()
    report = report_of(workdir)
    assert sorted(report["file_id"]) == ["GHGAF1", "GHGAF2", "GHGAF3", "GHGAF4"]
    assert set(report["outcome"]) == {"downloaded"}
    # Plan order: the three staged files first (input order), then the staging one.
    started = report.astype({"started_at": float}).sort_values("started_at")
    assert list(started["file_id"]) == ["GHGAF1", "GHGAF3", "GHGAF4", "GHGAF2"]
    assert list(report["file_id"]) == ["GHGAF1", "GHGAF3", "GHGAF4", "GHGAF2"]  # plan order
    # The log says why it came last (whether its job then still had to wait depends on
    # how long the others took, so that is not asserted).
    assert (
        "GHGAF2.fastq.gz.c4gh: staging"
        in (workdir / "downloads/logs/plan_downloads.log").read_text()
    )
    assert not list((workdir / "downloads").glob("*.part"))


def test_downloads_never_overlap_with_four_cores(sandbox_factory, workdir):
    sandbox = sandbox_factory([SandboxFile(f"F{i}", ".bin", size=400_000) for i in range(5)])
    assert_ok(snakemake(workdir, sandbox, "--cores", "4", connections=2))
    report = report_of(workdir).astype({"started_at": float, "finished_at": float})
    spans = sorted(zip(report["started_at"], report["finished_at"], strict=True))
    assert len(spans) == 5
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert end <= next_start, f"two downloads overlapped: {spans}"
    assert list(report.sort_values("started_at")["file_id"]) == [f"F{i}" for i in range(5)]


@pytest.mark.parametrize("key", ["skip_downloaded", "skip_unavailable"])
def test_skip_policy_false_cancels_and_lists_the_files(sandbox_factory, workdir, key):
    files = [SandboxFile("GHGAF1", ".bam"), SandboxFile("GHGAF2", ".bam", available=False)]
    sandbox = sandbox_factory(files if key == "skip_unavailable" else files[:1])
    existing = workdir / "downloads/GHGAF1.bam.c4gh"
    if key == "skip_downloaded":
        existing.parent.mkdir()
        existing.write_bytes(b"my own copy")
    run = snakemake(workdir, sandbox, "--cores", "1", **{key: "false"})
    assert run.returncode != 0
    log = (workdir / "downloads/logs/plan_downloads.log").read_text()
    listed = "GHGAF1.bam.c4gh" if key == "skip_downloaded" else "GHGAF2.bam.c4gh"
    assert listed in log and f"set {key}: true" in log
    if key == "skip_downloaded":
        assert existing.read_bytes() == b"my own copy"
    else:
        assert not (workdir / "downloads/GHGAF1.bam.c4gh").exists()  # nothing downloaded


@pytest.mark.parametrize("key", ["skip_downloaded", "skip_unavailable"])
def test_skip_policy_true_skips_and_downloads_the_rest(sandbox_factory, workdir, key):
    sandbox = sandbox_factory(
        [
            SandboxFile("GHGAF1", ".bam"),
            SandboxFile("GHGAF2", ".bam", available=False),
            SandboxFile("GHGAF3", ".cram"),
        ]
    )
    existing = workdir / "downloads/GHGAF1.bam.c4gh"
    existing.parent.mkdir()
    existing.write_bytes(b"my own copy")
    # Both lists are non-empty here, so the other key is set to true as well.
    assert_ok(
        snakemake(workdir, sandbox, "--cores", "1", skip_downloaded="true", skip_unavailable="yes")
    )
    assert existing.read_bytes() == b"my own copy"
    outcomes = dict(zip(report_of(workdir)["file_id"], report_of(workdir)["outcome"], strict=True))
    assert outcomes == {
        "GHGAF3": "downloaded",
        "GHGAF1": "skipped_downloaded",
        "GHGAF2": "skipped_unavailable",
    }
    log = (workdir / "downloads/logs/plan_downloads.log").read_text()
    assert "GHGAF1.bam.c4gh" in log and "GHGAF2.bam.c4gh" in log  # reported either way


def test_failed_download_is_cleaned_up_and_rerun_fetches_only_it(
    sandbox_factory, workdir, user_keys
):
    sandbox = sandbox_factory(BATCH[:1] + BATCH[2:])  # all staged
    sandbox.set_faults("GHGAF4", Faults(drop_after_bytes=20_000))
    run = snakemake(workdir, sandbox, "--cores", "1", "--keep-going")
    assert run.returncode != 0
    downloads = workdir / "downloads"
    assert not (downloads / "GHGAF4.vcf.c4gh").exists()
    assert not list(downloads.glob("*.part"))
    kept = {p.name: p.stat().st_mtime_ns for p in downloads.glob("*.c4gh")}
    assert set(kept) == {"GHGAF1.bam.c4gh", "GHGAF3.c4gh"}

    sandbox.set_faults("GHGAF4", Faults())
    sandbox.requests.clear()
    assert_ok(snakemake(workdir, sandbox, "--cores", "1"))
    assert {
        p.name: p.stat().st_mtime_ns for p in downloads.glob("*.c4gh") if p.name in kept
    } == kept
    fetched = {
        r.path.split("/objects/")[1].split("/")[0]
        for r in sandbox.requests.snapshot()
        if "/objects/" in r.path
    }
    assert fetched == {"GHGAF4"}
    assert decrypted(downloads / "GHGAF4.vcf.c4gh", user_keys.secret_key) == (
        sandbox.plaintext_path("GHGAF4").read_bytes()
    )


def test_dry_run_before_and_after_and_nothing_to_do_twice(sandbox_factory, workdir):
    sandbox = sandbox_factory(BATCH[:1])
    assert_ok(snakemake(workdir, sandbox, "--cores", "1", "-n"))
    assert not (workdir / "downloads/GHGAF1.bam.c4gh").exists()
    assert_ok(snakemake(workdir, sandbox, "--cores", "1"))
    dry = snakemake(workdir, sandbox, "--cores", "1", "-n")
    assert_ok(dry)
    again = snakemake(workdir, sandbox, "--cores", "1")
    assert_ok(again)
    assert "Nothing to be done" in again.stderr + again.stdout


def test_without_threads_each_download_is_its_own_snakemake_process_and_we_say_so(
    sandbox_factory, workdir, user_keys
):
    """No profile (a module consumer's own setup): Snakemake spawns a process per run:
    job. Slower, still correct, and the run says how to avoid it."""
    sandbox = sandbox_factory(BATCH[:1])
    run = snakemake(workdir, sandbox, "--cores", "1", "--workflow-profile", "none")
    assert_ok(run)
    assert "run with --force-use-threads" in run.stderr
    assert decrypted(workdir / "downloads/GHGAF1.bam.c4gh", user_keys.secret_key) == (
        sandbox.plaintext_path("GHGAF1").read_bytes()
    )


def test_workflow_is_lint_and_snakefmt_clean():
    lint = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout
    fmt = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fmt.returncode == 0, fmt.stderr
