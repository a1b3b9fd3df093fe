"""``ghga-tasks decrypt``: decrypt downloaded files and verify them against the archive."""

from __future__ import annotations

from pathlib import Path

import click

from ghga_tasks.core.decrypt import (
    decrypt_file,
    encrypted_files,
    known_checksums,
    load_private_key,
)
from ghga_tasks.core.errors import ConfigurationError, GhgaTasksError


def ask_passphrase() -> str:
    """Hidden prompt; only called for a passphrase-protected key, never an option."""
    return str(click.prompt("Passphrase for your private key", hide_input=True))


@click.command()
@click.option(
    "--input-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Where the downloaded .c4gh files are.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the decrypted files go (default: the input directory).",
)
@click.option(
    "--private-key",
    default=Path("key.sec"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Your private Crypt4GH key file.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace decrypted files that exist but are not the archive's content.",
)
def decrypt(input_dir: Path, output_dir: Path | None, private_key: Path, overwrite: bool) -> None:
    """Decrypt every downloaded .c4gh file and check it against GHGA's checksum.

    Run it again at any time: files already decrypted and verified are left as they are.
    """
    sources = encrypted_files(input_dir)
    if not sources:
        raise ConfigurationError(setting="--input-dir", problem=f"{input_dir} holds no .c4gh file")
    output_dir = output_dir or input_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    key = load_private_key(private_key, ask_passphrase)
    checksums = known_checksums(input_dir)
    failures: list[GhgaTasksError] = []
    for source in sources:
        try:
            result = decrypt_file(
                source, output_dir, key, checksums.get(source.name), overwrite=overwrite
            )
        except GhgaTasksError as error:
            failures.append(error)
            click.echo(f"  FAILED    {source.name}: {error}", err=True)
            continue
        status = "verified" if result.verified else "decrypted"
        if result.already_there:
            status = "already decrypted and verified"
        click.echo(f"  {status:<9} {source.name} -> {result.output}")
    click.echo(f"{len(sources) - len(failures)} of {len(sources)} file(s) decrypted.")
    if failures:
        # The most serious failure decides the exit code (an integrity failure: 5).
        raise max(failures, key=lambda e: e.exit_code)
