"""``ghga-tasks sandbox`` (a local GHGA to try things on) and ``ghga-tasks demo``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from ghga_tasks.core.decrypt import decrypt_file, encrypted_files, load_private_key
from ghga_tasks.core.errors import ConfigurationError, IntegrityError
from ghga_tasks.core.plan import plan_path, read_plan
from ghga_tasks.core.settings import Settings
from ghga_tasks.sandbox import (
    DEFAULT_FILES,
    FAST_RETRY_AFTER_MIN,
    Sandbox,
    SandboxFile,
    ensure_user_keypair,
    format_env,
    parse_file_specs,
    parse_size,
    sandbox_file_id,
    serve,
)
from ghga_tasks.sandbox.archive import RETRY_AFTER_MIN
from ghga_tasks.sandbox.faults import Faults, parse_fault_spec

from .download import download_batch

# The demo batch: the sandbox default (several extensions, one staging for a few seconds)
# plus a file the archive cannot deliver, so the skip policy shows up too.
DEMO_FILES = (*DEFAULT_FILES, SandboxFile(sandbox_file_id(99), ".bam", available=False))


@click.command()
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: any free one).")
@click.option(
    "--dir",
    "directory",
    default=Path("."),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the user key pair (key.pub, key.sec) and the data go.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the GHGA_* environment here (KEY=value) once the server answers.",
)
@click.option(
    "--files", "file_count", type=int, help="Serve N generated files instead of the default batch."
)
@click.option(
    "--sizes",
    default="1MB",
    show_default=True,
    help="Comma-separated plaintext sizes for --files (repeated), e.g. 100kB,5MB.",
)
@click.option(
    "--stage-seconds",
    default=0.0,
    show_default=True,
    help="With --files: seconds each file stages after its first request.",
)
@click.option(
    "--unavailable",
    multiple=True,
    metavar="FILE_ID",
    help="A file ID the archive answers 404 for (repeatable).",
)
@click.option(
    "--url-ttl", default=30.0, show_default=True, help="Seconds a presigned object URL stays valid."
)
@click.option(
    "--fault",
    "fault_specs",
    multiple=True,
    metavar="[FILE_ID:]KEY=VALUE,...",
    help="Inject faults into one file's responses, or every file's without FILE_ID "
    "(repeatable), e.g. --fault GHGAF00000000000001:drop_after_bytes=100000,drop_times=2 "
    "or --fault fail_status=500/502/503,fail_times=6. Keys: docs/reliability.md.",
)
@click.option(
    "--env-clients",
    is_flag=True,
    help="Also serve the env work package source (Download API calls without a work order "
    "token). Production GHGA does not: off by default.",
)
@click.option(
    "--fast-staging",
    is_flag=True,
    help=f"Ask staging files to come back after {FAST_RETRY_AFTER_MIN} s at least, instead of "
    f"GHGA's {RETRY_AFTER_MIN} s.",
)
def sandbox(
    port: int,
    directory: Path,
    env_file: Path | None,
    file_count: int | None,
    sizes: str,
    stage_seconds: float,
    unavailable: tuple[str, ...],
    url_ttl: float,
    fault_specs: tuple[str, ...],
    env_clients: bool,
    fast_staging: bool,
) -> None:
    """Run a local GHGA-compatible sandbox on 127.0.0.1 until Ctrl-C.

    It behaves as production GHGA: downloads need the printed GHGA_DOWNLOAD_TOKEN
    (work_package_source: wps). Prints the environment a client needs; with --env-file
    also writes it, e.g. `set -a; . sandbox.env; set +a` in another shell, then
    `snakemake --cores 1 --config work_package_source=wps` (or start the sandbox with
    --env-clients for the env source).
    """
    files = _scenario(file_count, sizes, stage_seconds, unavailable)
    faults = _faults(fault_specs, {spec.file_id for spec in files})

    def announce(running: Sandbox) -> None:
        click.echo(f"GHGA sandbox on {running.base_url} ({len(files)} files). Environment:")
        click.echo(format_env(running.env()), nl=False)
        click.echo(f"User key pair: {directory / 'key.pub'}, {directory / 'key.sec'}")
        if not env_clients:
            click.echo("Download API calls need work order tokens (wps source; --env-clients).")
        click.echo("Stop with Ctrl-C.")

    serve(
        files,
        directory,
        port,
        env_file,
        url_ttl=url_ttl,
        on_ready=announce,
        faults=faults,
        env_clients=env_clients,
        retry_after_min=FAST_RETRY_AFTER_MIN if fast_staging else RETRY_AFTER_MIN,
    )


def _faults(specs: tuple[str, ...], file_ids: set[str]) -> list[tuple[str | None, Faults]]:
    """``--fault`` values as (file ID or None for all, Faults); bad ones are usage errors."""
    parsed = []
    for spec in specs:
        try:
            file_id, faults = parse_fault_spec(spec)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--fault") from None
        if file_id is not None and file_id not in file_ids:
            raise click.BadParameter(f"no sandbox file {file_id!r}", param_hint="--fault")
        parsed.append((file_id, faults))
    return parsed


def _scenario(
    file_count: int | None, sizes: str, stage_seconds: float, unavailable: tuple[str, ...]
) -> list[SandboxFile]:
    if file_count is None:
        return [*DEFAULT_FILES, *parse_file_specs(0, unavailable=unavailable)]
    try:
        size_list = [parse_size(s) for s in sizes.split(",") if s.strip()]
        return parse_file_specs(file_count, size_list, stage_seconds, unavailable)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work here instead of a temporary directory (kept afterwards).",
)
@click.pass_context
def demo(ctx: click.Context, directory: Path | None) -> None:
    """The whole journey on a local sandbox that behaves as production GHGA: key pair,
    download token, batch download through the Snakemake workflow (work order tokens from
    the Work Package Service), decryption, and a check of every file against the archive."""
    with _demo_directory(directory) as root:
        keys = ensure_user_keypair(root)
        with Sandbox(
            files=DEMO_FILES, user_public_key=keys.public_key, workdir=root / "sandbox-data"
        ) as running:
            click.echo(
                f"Sandbox with {len(DEMO_FILES)} files on {running.base_url}; working in {root}"
            )
            settings = Settings(
                work_package_source="wps",
                output_dir=root / "downloads",
                user_public_key=keys.public_key_path,
                user_private_key=keys.secret_key_path,
                max_wait_time=120,
            )
            with _environment(_production_environment(running)):
                download_batch(
                    settings,
                    skip_downloaded=False,
                    skip_unavailable=True,
                    cores=1,
                    verbose=bool(ctx.obj["verbose"]),
                    workdir=root,
                )
            _decrypt_and_verify(settings, running)
        click.echo("\nDemo finished: every downloaded file decrypts to the archive's bytes.")
        if directory is None:
            click.echo("(It ran in a temporary directory, now removed; --dir DIR keeps it.)")


@contextlib.contextmanager
def _demo_directory(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="ghga-tasks-demo-") as temporary:
        yield Path(temporary)


def _production_environment(running: Sandbox) -> dict[str, str]:
    """What a GHGA user has: where the well-known values are, and the download token."""
    return {
        "GHGA_WKVS_URL": running.wkvs_url,
        "GHGA_DOWNLOAD_TOKEN": running.download_token,
    }


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set the sandbox's GHGA_* variables for the run (jobs inherit them), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _decrypt_and_verify(settings: Settings, running: Sandbox) -> None:
    """Decrypt every download and compare it with the sandbox's own plaintext checksum."""
    key = load_private_key(settings.user_private_key, lambda: "")
    target = settings.output_dir.parent / "decrypted"
    target.mkdir(exist_ok=True)
    click.echo(f"\nDecrypting into {target}:")
    ids = {e.file_name: e.file_id for e in read_plan(plan_path(settings.output_dir))}
    checked = 0
    for source in encrypted_files(settings.output_dir):
        file_id = ids[source.name]
        expected = running.checksum(file_id)
        result = decrypt_file(source, target, key, expected)
        if hashlib.sha256(result.output.read_bytes()).hexdigest() != expected:
            raise IntegrityError(file_id=file_id, problem="plaintext differs from the archive")
        click.echo(f"  verified  {result.output.name}  sha256 {expected[:16]}…")
        checked += 1
    if checked == 0:
        raise ConfigurationError(setting=str(settings.output_dir), problem="no file was downloaded")
    click.echo(f"{checked} file(s) verified against the archive's SHA-256.")
