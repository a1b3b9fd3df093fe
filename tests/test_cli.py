"""The click CLI: prompts, flags, exit codes, decrypt, and the one-command demo.

Commands run as real subprocesses of the installed console script, as a user runs them;
the prompts themselves are exercised in-process with click's CliRunner."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ghga_tasks.cli import main
from ghga_tasks.core.api import Unavailable
from ghga_tasks.core.errors import Cancelled
from ghga_tasks.core.plan import Status, classify
from ghga_tasks.core.work_package import FileSpec
from ghga_tasks.sandbox import SandboxFile

# The module, not the click command of the same name that ghga_tasks.cli exports.
download_module = importlib.import_module("ghga_tasks.cli.download")

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
BATCH = [
    SandboxFile("GHGAF1", ".bam", size=120_000),
    SandboxFile("GHGAF2", "", size=5_000),
    SandboxFile("GONE", ".vcf", available=False),
]


@pytest.fixture
def project(tmp_path: Path, user_keys, monkeypatch) -> Path:
    """A working directory with the user's keys and a config file, as a user has it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key.pub").write_bytes(user_keys.public_key_path.read_bytes())
    (tmp_path / "key.sec").write_bytes(user_keys.secret_key_path.read_bytes())
    write_config(tmp_path, {})
    return tmp_path


def write_config(project: Path, overrides: dict) -> Path:
    config = {
        "output_dir": str(project / "downloads"),
        "user_public_key": "key.pub",
        "part_size": 65536,
        "range_retries": 2,
        "read_timeout": 5,
        **overrides,
    }
    path = project / "ghga.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(
    sandbox,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``ghga-tasks`` as a user does (stdin a pipe, no terminal)."""
    environ = {
        **os.environ,
        **(env or sandbox.env()),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    command = [str(BIN / "ghga-tasks"), *args]
    result = subprocess.run(
        command, input=input or "", env=environ, capture_output=True, text=True, timeout=300
    )
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return result


DECRYPT = ("decrypt", "--input-dir", "downloads", "--output-dir", "plain")


def decrypt_downloads(sandbox, key: str = "key.sec", **kwargs):
    """``ghga-tasks decrypt`` of the project's downloads into ``plain/``."""
    return run_cli(sandbox, *DECRYPT, "--private-key", key, **kwargs)


def decrypt_in_process(key: str, typed: str):
    """``decrypt`` under CliRunner, whose stdin feeds the hidden passphrase prompt."""
    result = CliRunner().invoke(main, [*DECRYPT, "--private-key", key], input=typed)
    result.returncode = result.exit_code  # type: ignore[attr-defined]
    return result


def object_requests(sandbox, file_id: str) -> list:
    return [r for r in sandbox.requests.snapshot() if r.file_id == file_id and "/s3/" in r.path]


@pytest.mark.parametrize(
    ("answer", "skip"),
    [("y\n", True), ("n\n", False)],  # skip the listed files / cancel the run
)
def test_prompt_lists_the_files_then_skips_or_cancels(monkeypatch, answer, skip):
    """The question itself, in-process: Snakemake's API cannot run jobs under CliRunner,
    so the end-to-end runs below answer with flags, which take the same path."""
    monkeypatch.setattr(download_module, "stdin_is_interactive", lambda: True)
    entries = [classify(FileSpec("GONE", ".vcf"), Unavailable(reason="gone"))]
    with CliRunner().isolation(input=answer) as (out, _err, _):
        if skip:
            assert download_module.ask_skip(entries, Status.UNAVAILABLE, False, "--flag")
        else:
            with pytest.raises(Cancelled) as raised:
                download_module.ask_skip(entries, Status.UNAVAILABLE, False, "--flag")
            assert raised.value.exit_code == 3
        shown = out.getvalue().decode()
    assert "GONE.vcf.c4gh" in shown and "Skip these files" in shown


def test_skipped_existing_file_is_untouched_and_not_downloaded(
    sandbox_factory, project, monkeypatch
):
    sandbox = sandbox_factory(BATCH[:2])
    existing = project / "downloads/GHGAF1.bam.c4gh"
    existing.parent.mkdir()
    existing.write_bytes(b"my own copy")
    before = existing.stat().st_mtime_ns
    result = run_cli(sandbox, "download", "--config-file", "ghga.yaml", "--skip-downloaded")
    assert result.returncode == 0, result.output
    assert existing.read_bytes() == b"my own copy" and existing.stat().st_mtime_ns == before
    assert object_requests(sandbox, "GHGAF1") == []  # not downloaded behind our back
    assert (project / "downloads/GHGAF2.c4gh").exists()
    assert "skipped_downloaded" in result.output


def test_without_a_terminal_and_without_flags_it_cancels_naming_the_flag(
    sandbox_factory, project, monkeypatch
):
    sandbox = sandbox_factory(BATCH)
    result = run_cli(sandbox, "download", "--config-file", "ghga.yaml")
    assert result.returncode == 3
    assert "--skip-unavailable" in result.output
    assert not (project / "downloads/GHGAF1.bam.c4gh").exists()


@pytest.mark.parametrize("flags", [["--skip-unavailable"], ["--yes"]])
def test_flags_answer_the_prompts(sandbox_factory, project, monkeypatch, flags, user_keys):
    sandbox = sandbox_factory(BATCH)
    result = run_cli(sandbox, "download", "--config-file", "ghga.yaml", *flags)
    assert result.returncode == 0, result.output
    assert "Summary" in result.output and "skipped_unavailable" in result.output
    decrypted = decrypt_downloads(sandbox)
    assert decrypted.returncode == 0, decrypted.output
    assert decrypted.output.count("verified") == 2
    assert (project / "plain/GHGAF1.bam").read_bytes() == (
        sandbox.plaintext_path("GHGAF1").read_bytes()
    )


def test_key_mismatch_exits_6(sandbox_factory, project, tmp_path, monkeypatch):
    sandbox = sandbox_factory(BATCH[:1])
    other = sandbox_factory(BATCH[:1], user_public_key=bytes(range(32)), workdir=tmp_path / "other")
    result = run_cli(other, "download", "--config-file", "ghga.yaml", "--yes")
    assert result.returncode == 6
    assert "\nError: " in "\n" + result.output and "key.pub" in result.output
    assert sandbox.requests.snapshot() == [] or object_requests(other, "GHGAF1") == []


def test_staging_timeout_exits_4(sandbox_factory, project, monkeypatch):
    sandbox = sandbox_factory([SandboxFile("SLOW", ".bam", stage_seconds=math.inf)])
    write_config(project, {"max_wait_time": 1.5})
    result = run_cli(sandbox, "download", "--config-file", "ghga.yaml", "--yes")
    assert result.returncode == 4, result.output
    assert "SLOW" in result.output and "max_wait_time" in result.output
    assert not list((project / "downloads").glob("SLOW*"))


def test_forged_envelope_exits_5(sandbox_factory, project, monkeypatch):
    sandbox = sandbox_factory(BATCH[:1])
    env = {**sandbox.env(), "GHGA_PUBLIC_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
    result = run_cli(sandbox, "download", "--config-file", "ghga.yaml", "--yes", env=env)
    assert result.returncode == 5, result.output
    assert "envelope" in result.output
    assert not list((project / "downloads").glob("GHGAF1*"))


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"connections": 0}, "connections"),  # invalid value
        ({"skip_unavailable": "perhaps"}, "skip_unavailable"),  # not a boolean
        ({"work_package_source": "ftp"}, "work_package_source"),  # unknown source
    ],
)
def test_bad_config_exits_2(sandbox_factory, project, config, names):
    sandbox = sandbox_factory(BATCH[:1])
    write_config(project, config)
    result = run_cli(sandbox, "plan", "--config-file", "ghga.yaml")
    assert result.returncode == 2
    assert "\nError: " in "\n" + result.output and names in result.output
    assert "Traceback" not in result.output


def test_plan_shows_the_table_and_downloads_nothing(sandbox_factory, project):
    sandbox = sandbox_factory(BATCH)
    result = run_cli(sandbox, "plan", "--config-file", "ghga.yaml")
    assert result.returncode == 0, result.output
    for text in ("GHGAF1.bam.c4gh", "staged", "unavailable", "free in"):
        assert text in result.output
    assert object_requests(sandbox, "GHGAF1") == []


def test_decrypt_refuses_to_overwrite_and_detects_a_checksum_mismatch(
    sandbox_factory, project, monkeypatch
):
    sandbox = sandbox_factory(BATCH[:2])
    assert (
        run_cli(
            sandbox,
            "download",
            "--config-file",
            "ghga.yaml",
            "--yes",
        ).returncode
        == 0
    )
    out = project / "plain"
    out.mkdir()
    (out / "GHGAF1.bam").write_bytes(b"precious")
    result = decrypt_downloads(sandbox)
    assert result.returncode == 1
    assert (out / "GHGAF1.bam").read_bytes() == b"precious"
    assert "already exists" in result.output and "pass --overwrite to replace it" in result.output

    report = project / "downloads/ghga_report.tsv"
    report.write_text(report.read_text().replace(sandbox.checksum("GHGAF2"), "0" * 64))
    (out / "GHGAF1.bam").unlink()
    (out / "GHGAF2").unlink()  # decrypted by the first run
    result = decrypt_downloads(sandbox)
    assert result.returncode == 5
    assert not (out / "GHGAF2").exists() and not (out / "GHGAF2.part").exists()
    assert hashlib.sha256((out / "GHGAF1.bam").read_bytes()).hexdigest() == (
        sandbox.checksum("GHGAF1")
    )


def test_decrypt_twice_leaves_verified_files_and_overwrite_replaces_the_rest(
    sandbox_factory, project
):
    sandbox = sandbox_factory(BATCH[:2])
    assert run_cli(sandbox, "download", "--config-file", "ghga.yaml", "--yes").returncode == 0
    first = decrypt_downloads(sandbox)
    assert first.returncode == 0, first.output
    out = project / "plain"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = decrypt_downloads(sandbox)
    assert again.returncode == 0, again.output
    assert again.output.count("already decrypted and verified") == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written

    (out / "GHGAF1.bam").write_bytes(b"edited by hand")
    refused = decrypt_downloads(sandbox)
    assert refused.returncode == 1 and "pass --overwrite" in refused.output
    replaced = run_cli(sandbox, *DECRYPT, "--private-key", "key.sec", "--overwrite")
    assert replaced.returncode == 0, replaced.output
    assert hashlib.sha256((out / "GHGAF1.bam").read_bytes()).hexdigest() == (
        sandbox.checksum("GHGAF1")
    )


def test_decrypt_of_a_directory_without_downloads_is_a_usage_error(sandbox_factory, project):
    sandbox = sandbox_factory(BATCH[:1])
    (project / "downloads").mkdir()
    result = decrypt_downloads(sandbox)
    assert result.returncode == 2
    assert "holds no .c4gh file" in result.output


def test_demo_runs_end_to_end_as_a_user_runs_it(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(BIN / "ghga-tasks"), "demo", "--dir", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Summary" in result.stdout and "verified against the archive" in result.stdout
    decrypted = tmp_path / "demo/decrypted"
    assert len(list(decrypted.iterdir())) == 4
    assert not list((tmp_path / "demo/downloads").glob("*.part"))
    # What a new user tries first on the decrypted files works (gzip's own test):
    for name in ("GHGAF00000000000002.fastq.gz", "GHGAF00000000000003.vcf.gz",
                 "GHGAF00000000000001.bam"):  # fmt: skip
        assert subprocess.run(["gzip", "-t", str(decrypted / name)]).returncode == 0, name
    with gzip.open(decrypted / "GHGAF00000000000002.fastq.gz", "rt") as fastq:
        assert fastq.readline().startswith("@") and set(fastq.readline().strip()) <= set("ACGT")
    with gzip.open(decrypted / "GHGAF00000000000001.bam", "rb") as bam:
        assert bam.read(4) == b"BAM\x01"


def test_decrypt_asks_for_the_passphrase_of_a_protected_key(sandbox_factory, project, tmp_path):
    from crypt4gh.keys import c4gh, get_public_key

    locked_pub, locked_sec = tmp_path / "locked.pub", tmp_path / "locked.sec"
    c4gh.generate(str(locked_sec), str(locked_pub), passphrase=b"open sesame", comment=b"test")
    sandbox = sandbox_factory(
        BATCH[1:2],
        user_public_key=bytes(get_public_key(str(locked_pub))),
        workdir=tmp_path / "locked-sandbox",
    )
    write_config(project, {"user_public_key": str(locked_pub)})
    assert run_cli(sandbox, "download", "--config-file", "ghga.yaml", "--yes").returncode == 0
    wrong = decrypt_in_process(str(locked_sec), "guess\n")
    assert wrong.returncode == 2 and not (project / "plain/GHGAF2").exists()
    right = decrypt_in_process(str(locked_sec), "open sesame\n")
    assert right.returncode == 0, right.output
    assert "open sesame" not in right.output  # the prompt hides what is typed
    assert (project / "plain/GHGAF2").read_bytes() == sandbox.plaintext_path("GHGAF2").read_bytes()


def test_plan_asks_for_the_download_token_with_a_hidden_prompt(
    sandbox_factory, project, monkeypatch
):
    sandbox = sandbox_factory(BATCH[:1])
    write_config(project, {"work_package_source": "wps", "user_private_key": "key.sec"})
    env = {k: v for k, v in sandbox.env().items() if k != "GHGA_DOWNLOAD_TOKEN"}
    monkeypatch.delenv("GHGA_DOWNLOAD_TOKEN", raising=False)
    monkeypatch.setattr(download_module, "stdin_is_interactive", lambda: True)
    result = CliRunner().invoke(
        main, ["plan", "--config-file", "ghga.yaml"], input=sandbox.download_token + "\n", env=env
    )
    assert result.exit_code == 0, result.output
    assert "GHGAF1.bam.c4gh" in result.output and "staged" in result.output
    assert sandbox.download_token not in result.output  # hidden, never echoed
