"""examples/consumer, the project that uses ghga-tasks as a Snakemake module, copied into a
test's directory and pointed at this checkout's Snakefile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ghga_tasks.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def consumer(tmp_path: Path, user_keys, name: str = "consumer", **ghga_config: Any) -> Path:
    """A copy of examples/consumer with the user's key pair; ``ghga_config`` overrides
    keys under ``ghga:`` (an absolute ``output_dir`` lets two projects share one)."""
    directory = tmp_path / name
    shutil.copytree(REPO / "examples/consumer", directory)
    shutil.copy(user_keys.public_key_path, directory / "key.pub")
    shutil.copy(user_keys.secret_key_path, directory / "key.sec")
    snakefile = directory / "Snakefile"
    snakefile.write_text(
        snakefile.read_text().replace('"../../Snakefile"', repr(str(REPO / "Snakefile")))
    )
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["ghga"].update(part_size=65536, read_timeout=5)
    config["ghga"].update(
        {key: str(v) if isinstance(v, Path) else v for key, v in ghga_config.items()}
    )
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def environment(sandbox: Sandbox) -> dict[str, str]:
    """The sandbox's GHGA_* variables, and this interpreter's bin first on PATH."""
    return {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run_consumer(directory: Path, sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=directory,
        env=environment(sandbox), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def start_consumer(directory: Path, sandbox: Sandbox, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=directory, env=environment(sandbox), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
