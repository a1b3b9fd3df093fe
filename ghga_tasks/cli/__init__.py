"""The ``ghga-tasks`` command line.

Commands stay thin: parse options, call the core, print. Expected failures
(``GhgaTasksError``) become one ``Error: …`` line and the error's exit code; ``-v``
adds the traceback for people debugging. Ctrl-C exits with 130.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from ghga_tasks.core.errors import GhgaTasksError, Interrupted

log = logging.getLogger("ghga_tasks")

INTERRUPTED = 130
# The README's table says the same (a test compares them, and them with core/errors.py).
EXIT_CODES = {
    0: "done",
    1: "a download or API failure",
    2: "usage or configuration error",
    3: "cancelled (by you or by the skip policy)",
    4: "staging did not finish within `max_wait_time`",
    5: "integrity check failed (size, envelope, checksum)",
    6: "your public key is not the one the work package was made for",
    INTERRUPTED: "interrupted (Ctrl-C); no partial file is kept",
}


def configure_logging(level: int) -> None:
    """Log lines to stderr; crypt4gh logs key material at DEBUG, so it never gets DEBUG."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("crypt4gh", "urllib3", "waitress"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Each command's module is imported only when that command runs: the download command
# pulls in pandas and Snakemake, the sandbox a web server and JWT; a workflow step needs
# none of them, and start-up is paid per step process.
COMMANDS = {
    "download": "download:download",
    "plan": "download:plan",
    "decrypt": "decrypt:decrypt",
    "sandbox": "sandbox:sandbox",
    "demo": "sandbox:demo",
    "step": "steps:step",
}


class ErrorHandlingGroup(click.Group):
    """Turns our errors into one line and an exit code instead of a traceback, and
    imports each command on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, Interrupted):  # one message for every interruption
            click.echo("Interrupted: no partial file was kept.", err=True)
            ctx.exit(INTERRUPTED)
        except GhgaTasksError as error:
            if ctx.obj and ctx.obj.get("verbose"):
                log.exception("details")
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:  # the file system said no somewhere we did not expect
            if ctx.obj and ctx.obj.get("verbose"):
                log.exception("details")
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"Error: {where}{error.strerror or error}", err=True)
            ctx.exit(1)


@click.group(
    cls=ErrorHandlingGroup,
    epilog="Exit codes:\n\n\b\n"
    + "\n".join(f"{code:>4}  {meaning}" for code, meaning in EXIT_CODES.items()),
)
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs and error details.")
@click.version_option(package_name="ghga-tasks")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Bulk-download controlled-access files from GHGA (the German Human Genome-Phenome
    Archive), as a Snakemake workflow or from this command line."""
    ctx.obj = {"verbose": verbose}
    # Workflow steps write job logs: every INFO line helps there. People at a terminal
    # get our own output plus warnings, and everything with -v.
    quiet = logging.INFO if ctx.invoked_subcommand == "step" else logging.WARNING
    configure_logging(logging.DEBUG if verbose else quiet)
