"""The competitors: how each one is invoked for a batch, as a user would run it.

Every competitor gets the same batch (the same files of the same sandbox) and an empty
output directory, and runs as its own process tree, so start-up costs count.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PYTHON_BIN = Path(sys.executable).parent
CONNECTOR_VERSION = "4.0.1"


@dataclass(frozen=True)
class Batch:
    """What one run downloads: files (name and presigned URL) plus the credentials."""

    names: list[str]  # output file names, <accession><ext>.c4gh
    urls: list[str]  # presigned object URLs (for curl and aria2c)
    env: dict[str, str]  # GHGA_* variables: env work package and a WPS download token
    download_token: str  # for the official client (stdin) and work_package_source: wps
    connections: int = 5
    curl_range: str | None = None  # curl fetches only this byte range (a rate check)
    config: dict[str, object] = field(default_factory=dict)  # extra ghga-tasks settings


@dataclass(frozen=True)
class Invocation:
    command: list[str]
    env: dict[str, str]
    stdin_text: str | None = None


Builder = Callable[[Batch, Path], Invocation]


@dataclass(frozen=True)
class Competitor:
    name: str
    build: Builder
    available: Callable[[], str]  # "" when it can run here, else why not


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment plus ``extra``, loopback unproxied, our venv first."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PATH"] = f"{PYTHON_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return {**env, **extra}


def write_config(batch: Batch, workdir: Path) -> Path:
    """The ghga-tasks config for a run: the repository's defaults plus the benchmark's."""
    values = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    values.update(
        # The work package as the official client gets it: a download token and the WPS.
        work_package_source="wps",
        output_dir="downloads",
        user_public_key="key.pub",
        user_private_key="key.sec",
        connections=batch.connections,
        **batch.config,
    )
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def curl(batch: Batch, workdir: Path) -> Invocation:
    """One curl process, one connection at a time; several files reuse the connection."""
    out = workdir / "downloads"
    lines = [
        f'url = "{url}"\noutput = "{out / name}"\n'
        for name, url in zip(batch.names, batch.urls, strict=True)
    ]
    config = workdir / "curl.config"
    config.write_text("".join(lines))
    command = ["curl", "--silent", "--show-error", "--fail", "--create-dirs", "-K", str(config)]
    if batch.curl_range:
        command += ["--range", batch.curl_range]
    return Invocation(command, base_env({}))


def curl_durable(batch: Batch, workdir: Path) -> Invocation:
    """curl, then an ``fsync`` of every file it wrote (coreutils ``sync FILE...``): what
    a download must pay before it may say a file survives a crash, as ours does."""
    written = [str(workdir / "downloads" / name) for name in batch.names]
    fetch = curl(batch, workdir)
    script = f"{shlex.join(fetch.command)} && exec sync -- {shlex.join(written)}"
    return Invocation(["sh", "-c", script], fetch.env)


def aria2c(batch: Batch, workdir: Path) -> Invocation:
    """aria2c with ``-x N -s N``: the multi-connection reference (no preallocation)."""
    lines = [f"{url}\n  out={name}\n" for name, url in zip(batch.names, batch.urls, strict=True)]
    listing = workdir / "aria2.input"
    listing.write_text("".join(lines))
    n = str(batch.connections)
    command = [
        "aria2c", "--quiet", "-x", n, "-s", n, "-k", "1M", "--file-allocation=none",
        "--allow-overwrite=true", "--auto-file-renaming=false",
        "-d", str(workdir / "downloads"), "-i", str(listing),
    ]  # fmt: skip
    return Invocation(command, base_env({}))


def ghga_tasks_cli(batch: Batch, workdir: Path) -> Invocation:
    """``ghga-tasks download --yes``: plan in-process, then the packaged workflow."""
    config = write_config(batch, workdir)
    command = [str(PYTHON_BIN / "ghga-tasks"), "download", "--yes", "--config-file", str(config)]
    return Invocation(command, base_env(batch.env))


def snakemake(batch: Batch, workdir: Path) -> Invocation:
    """``snakemake --cores 1`` on the repository's Snakefile (its default profile too)."""
    config = write_config(batch, workdir)
    command = [
        sys.executable, "-m", "snakemake", "--cores", "1",
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(config),
    ]  # fmt: skip
    return Invocation(command, base_env(batch.env))


def connector_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "ghga-tasks-bench" / f"ghga-connector-{CONNECTOR_VERSION}"


def official(batch: Batch, workdir: Path) -> Invocation:
    """The official ``ghga-connector download``: token on stdin, defaults otherwise
    (5 parallel part downloads); it reads ``--output-dir`` but never creates it."""
    (workdir / "downloads").mkdir(parents=True, exist_ok=True)
    command = [
        str(connector_venv() / "bin" / "ghga-connector"), "download",
        "--output-dir", str(workdir / "downloads"),
        "--my-public-key-path", str(workdir / "key.pub"),
        "--my-private-key-path", str(workdir / "key.sec"),
    ]  # fmt: skip
    env = {
        "GHGA_CONNECTOR_WKVS_API_URL": batch.env["GHGA_WKVS_URL"],
        "GHGA_CONNECTOR_MAX_CONCURRENT_DOWNLOADS": str(batch.connections),
    }
    return Invocation(command, base_env(env), stdin_text=batch.download_token + "\n")


def _tool(name: str) -> Callable[[], str]:
    return lambda: "" if shutil.which(name) else f"not run: {name} is not installed"


def _official_available() -> str:
    if (connector_venv() / "bin" / "ghga-connector").exists():
        return ""
    return (
        f"not run: ghga-connector=={CONNECTOR_VERSION} is not installed (run without --no-official)"
    )


CURL = Competitor("curl", curl, _tool("curl"))
CURL_DURABLE = Competitor("curl + fsync", curl_durable, _tool("curl"))
ARIA2C = Competitor("aria2c -x5", aria2c, _tool("aria2c"))
GHGA_TASKS = Competitor("ghga-tasks download", ghga_tasks_cli, lambda: "")
SNAKEMAKE = Competitor("snakemake --cores 1", snakemake, lambda: "")
OFFICIAL = Competitor(f"ghga-connector {CONNECTOR_VERSION}", official, _official_available)
