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
    INTERRUPTED: "interrupted (Ctrl-C); no partial file is kept, unless `resume_partial` keeps "
    "one to resume",
}


def configure_logging(ours: int, others: int = logging.WARNING) -> None:
    """Log lines to stderr: ours at ``ours``, other libraries' at ``others``. crypt4gh
    logs key material at DEBUG, so it never gets DEBUG."""
    logging.basicConfig(
        level=others,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    log.setLevel(ours)
    logging.getLogger("crypt4gh").setLevel(max(others, logging.INFO))


VERBOSITY_FLAGS = {"-v": 1, "--verbose": 1, "-vv": 2, "-vvv": 3, "-q": 0, "--quiet": 0}


def hoist_verbosity(args: list[str]) -> list[str]:
    """``-v``/``-q`` are accepted anywhere (``ghga-tasks download -v``): moved to the front,
    where the group reads them. Nothing after ``--`` is touched."""
    end = args.index("--") if "--" in args else len(args)
    flags = [arg for arg in args[:end] if arg in VERBOSITY_FLAGS]
    rest = [arg for arg in args[:end] if arg not in VERBOSITY_FLAGS]
    return flags + rest + args[end:]


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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_verbosity(args))

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
        except (KeyboardInterrupt, Interrupted) as error:  # one message for every interruption
            detail = error.detail if isinstance(error, Interrupted) else Interrupted().detail
            click.echo(f"Interrupted: {detail}.", err=True)
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
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="-v: ghga-tasks' details, error details and Snakemake's log; -vv: other "
    "libraries' debug lines too. Accepted before or after the command.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@click.version_option(package_name="ghga-tasks")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Bulk-download controlled-access files from GHGA (the German Human Genome-Phenome
    Archive), as a Snakemake workflow or from this command line."""
    ctx.obj = {"verbose": verbose, "quiet": quiet and not verbose}
    # Workflow steps write job logs: every INFO line helps there. People at a terminal
    # get our own output plus warnings, more with -v, less with -q.
    default = logging.INFO if ctx.invoked_subcommand == "step" else logging.WARNING
    if verbose:
        configure_logging(logging.DEBUG, logging.DEBUG if verbose > 1 else logging.WARNING)
    else:
        configure_logging(logging.ERROR if quiet else default)
