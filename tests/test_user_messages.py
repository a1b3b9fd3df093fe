"""What a person at the terminal sees: the real ``ghga-tasks`` command in a subprocess,
its exit code and its lines, for the moments that matter (a server that does not answer,
a second decrypt, verbosity), and the README's exit-code table against the code."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ghga_tasks.cli import EXIT_CODES
from ghga_tasks.core import errors
from ghga_tasks.sandbox import SandboxFile

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def ghga_tasks(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(BIN / "ghga-tasks"), *args], cwd=cwd, env=env or dict(os.environ),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_server_that_does_not_answer_says_what_is_retried_and_until_when(
    sandbox_factory, tmp_path: Path, user_keys
) -> None:
    sandbox = sandbox_factory([SandboxFile("GHGAF1", ".bam", size=1000)])
    port = closed_port()
    env = {
        **os.environ, **sandbox.env(),
        "GHGA_DOWNLOAD_API_URL": f"http://127.0.0.1:{port}/ga4gh/drs/v1",
    }  # fmt: skip
    (tmp_path / "key.pub").write_bytes(user_keys.public_key_path.read_bytes())
    run = ghga_tasks("download", "--yes", "--config", "range_retries=2", cwd=tmp_path, env=env)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    retries = [line for line in lines if "trying again in" in line]
    assert retries and all(
        f"cannot reach 127.0.0.1:{port} (connection refused)" in r for r in retries
    )
    assert re.search(r"giving up at \d\d:\d\d:\d\d$", retries[0])
    assert lines[-1] == (
        f"Error: cannot reach http://127.0.0.1:{port}/ga4gh/drs/v1/health: "
        "could not connect (connection refused)"
    )
    assert "Retrying (Retry(" not in run.stderr  # urllib3's own line is replaced by ours


def test_exit_codes_in_the_readme_the_help_and_the_errors_agree(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    table = {int(code): text for code, text in re.findall(r"^\| (\d+) \| (.+?) \|$", readme, re.M)}
    assert table == EXIT_CODES
    help_text = ghga_tasks("--help", cwd=tmp_path).stdout
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>4}  {meaning}" in help_text
    raised_by = {
        errors.GhgaTasksError: 1, errors.ConfigurationError: 2, errors.Cancelled: 3,
        errors.StagingTimeout: 4, errors.IntegrityError: 5, errors.PublicKeyMismatch: 6,
        errors.Interrupted: 130,
    }  # fmt: skip
    for error, code in raised_by.items():
        assert error.exit_code == code, error
    every_code = {cls.exit_code for cls in _all_subclasses(errors.GhgaTasksError)}
    assert every_code <= set(EXIT_CODES) - {0}  # FilesFailed borrows its files' codes


def _all_subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _all_subclasses(sub)
    return found


@pytest.mark.parametrize("command", ["download", "plan", "decrypt", "sandbox", "demo"])
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    run = ghga_tasks(command, "--help", cwd=tmp_path)
    assert run.returncode == 0 and "Usage: ghga-tasks" in run.stdout


@pytest.mark.parametrize(
    ("flags", "snakemake_log", "library_debug", "progress"),
    [
        ((), False, False, True),  # our progress, warnings and the summary
        (("-v",), True, False, True),  # -v after the command: Snakemake's log, once
        (("-vv",), True, True, True),  # other libraries' DEBUG lines only now
        (("-q",), False, False, False),  # errors and the summary
    ],
    ids=["default", "-v", "-vv", "-q"],
)
def test_verbosity_flags_after_the_command(
    flags, snakemake_log, library_debug, progress, sandbox_factory, tmp_path: Path, user_keys
) -> None:
    sandbox = sandbox_factory([SandboxFile("GHGAF1", ".bam", size=1000)])
    (tmp_path / "key.pub").write_bytes(user_keys.public_key_path.read_bytes())
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run = ghga_tasks("download", "--yes", *flags, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    output = run.stdout + run.stderr
    assert output.count("Building DAG of jobs") == (1 if snakemake_log else 0)
    assert ("Starting new HTTP connection" in output) is library_debug  # urllib3's DEBUG
    assert ("[1/1] GHGAF1.bam.c4gh" in output) is progress
    assert "Summary:" in run.stdout  # always


def test_the_cli_runs_snakemake_with_the_default_profile_as_it_is() -> None:
    """No copy of profiles/default in the CLI: every key is passed on (or said why not)."""
    from ghga_tasks.cli.workflow import default_profile, profile_settings

    settings = profile_settings(default_profile())
    assert settings == {
        "scheduler": "greedy",
        "use_threads": True,
        "keep_going": True,
        "rerun_triggers": ["mtime", "params", "input"],
        "lock": False,
    }
    with pytest.raises(ValueError, match="does not pass on"):
        profile_settings({**default_profile(), "latency-wait": 5})


def _in_a_terminal(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its stdin, stdout and stderr."""
    import fcntl
    import pty
    import struct
    import termios

    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # 120x30
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(parent)
    return process.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_progress_at_a_terminal_shows_the_batch_and_the_file(
    sandbox_factory, tmp_path: Path, user_keys
) -> None:
    from ghga_tasks.sandbox.faults import Faults

    sandbox = sandbox_factory(
        [SandboxFile("GHGAF1", ".bam", size=600_000), SandboxFile("GHGAF2", "", size=5_000)]
    )
    sandbox.set_faults("GHGAF1", Faults(delay_seconds=0.25))  # ~3 s: several redraws
    (tmp_path / "key.pub").write_bytes(user_keys.public_key_path.read_bytes())
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = [str(BIN / "ghga-tasks"), "download", "--yes", "--config", "part_size=65536",
               "--config", "connections=1"]  # fmt: skip
    code, screen = _in_a_terminal(command, tmp_path, env)
    assert code == 0, screen[-2000:]
    assert "[0/2] batch" in screen  # the batch bar: files done of all
    assert re.search(r"GHGAF1\.bam\.c4gh: +\d+%", screen)  # the file's own bar
    assert "B/s" in screen
    rates = [float(m) for m in re.findall(r"(\d+\.?\d*)GB/s", screen)]
    assert not rates  # no absurd first sample on loopback with a slowed file
