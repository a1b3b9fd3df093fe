"""`ghga-tasks sandbox` as a user starts it, then a core download from its printed
environment, decrypted with the reference `crypt4gh` command-line tool; and the flags that
relax its production defaults."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from ghga_tasks.cli import main
from ghga_tasks.cli import sandbox as sandbox_command
from ghga_tasks.core import batch
from ghga_tasks.core.settings import Settings

BIN = Path(sys.executable).parent


def read_env_file(path: Path, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sandbox did not write {path}")
        time.sleep(0.1)
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture
def sandbox_process(tmp_path: Path):
    directory, env_file = tmp_path / "sandbox", tmp_path / "sandbox.env"
    process = subprocess.Popen(
        [
            str(BIN / "ghga-tasks"),
            "sandbox",
            "--dir",
            str(directory),
            "--env-file",
            str(env_file),
            "--files",
            "3",
            "--sizes",
            "100kB,200kB,1MB",
            "--env-clients",  # the download below uses the env work package source
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield directory, read_env_file(env_file), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_sandbox_command_serves_a_batch_the_crypt4gh_tool_decrypts(sandbox_process, tmp_path):
    directory, env, process = sandbox_process
    api = env["GHGA_DOWNLOAD_API_URL"]
    assert api.startswith("http://127.0.0.1:")
    assert requests.get(f"{api}/health", timeout=5).json() == {"status": "OK"}

    settings = Settings(output_dir=tmp_path / "downloads", user_public_key=directory / "key.pub")
    entries = batch.plan_batch(settings, env)
    assert len(entries) == 3
    for entry in entries:
        batch.download_one(settings, entry.file_name, env)
        encrypted = settings.output_dir / entry.file_name
        decrypted = subprocess.run(
            [str(BIN / "crypt4gh"), "decrypt", "--sk", str(directory / "key.sec")],
            stdin=encrypted.open("rb"),
            capture_output=True,
            check=True,
            env={**os.environ, "C4GH_PASSPHRASE": ""},
        ).stdout
        assert hashlib.sha256(decrypted).hexdigest() == entry.sha256  # the sandbox's checksum

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not (tmp_path / "sandbox.env").exists()  # never points at a dead server


@pytest.mark.parametrize(
    ("flags", "env_clients", "retry_after_min"),
    [
        ([], False, 5),  # production GHGA
        (["--env-clients"], True, 5),
        (["--fast-staging"], False, 1),
        (["--env-clients", "--fast-staging"], True, 1),
    ],
)
def test_sandbox_flags_relax_the_production_defaults_only_when_given(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    flags: list[str],
    env_clients: bool,
    retry_after_min: int,
) -> None:
    served: list[dict[str, object]] = []
    monkeypatch.setattr(sandbox_command, "serve", lambda *args, **kwargs: served.append(kwargs))
    result = CliRunner().invoke(main, ["sandbox", "--dir", str(tmp_path), *flags])
    assert result.exit_code == 0, result.output
    [kwargs] = served
    assert (kwargs["env_clients"], kwargs["retry_after_min"]) == (env_clients, retry_after_min)
