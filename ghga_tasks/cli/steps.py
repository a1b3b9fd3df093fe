"""``ghga-tasks step …``: the commands the Snakemake rules run, one per rule.

A rule runs them when its jobs must be processes of their own (``downloads_on_cluster``:
a cluster executor submits them); otherwise the same functions run inside Snakemake
(``ghga_tasks.core.jobs``). Researchers use ``ghga-tasks download`` instead.
"""

from __future__ import annotations

import functools
import json
import signal
from pathlib import Path

import click

from ghga_tasks.core import batch, report, shutdown, state
from ghga_tasks.core.decrypt import decrypt_downloaded
from ghga_tasks.core.settings import Settings


@click.group()
@click.pass_context
def step(ctx: click.Context) -> None:
    """Single workflow steps, as the Snakemake rules run them."""
    # A cluster ends a job (scancel, time limit, preemption) with SIGTERM, which would kill
    # Python without any cleanup and leave a .part behind. Take the Ctrl-C path instead:
    # the download removes its .part and the step exits 130 before SLURM's SIGKILL. Ctrl-C
    # itself goes the same way, so neither lands inside a lock wait (shutdown.interrupt).
    for signum in shutdown.STOP_SIGNALS:
        previous = signal.signal(signum, shutdown.interrupt)
        ctx.call_on_close(functools.partial(signal.signal, signum, previous))


settings_file_option = click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The settings file the plan step wrote.",
)


@step.command("plan")
@click.option(
    "--settings",
    "settings_json",
    required=True,
    help="The workflow config as JSON (the rule passes it).",
)
def plan_step(settings_json: str) -> None:
    """Probe every file, write ghga_plan.tsv, apply the skip policy."""
    batch.plan_and_apply_skip_policy(Settings.from_mapping(json.loads(settings_json)))


@step.command("download")
@settings_file_option
@click.option(
    "--gate",
    default="",
    help="The release marker the job waited for, relative to the output directory.",
)
@click.argument("file_name")
def download_step(settings_file: Path, gate: str, file_name: str) -> None:
    """Download one planned file (FILE_NAME as in ghga_plan.tsv)."""
    batch.download_one(state.load_settings(settings_file), file_name, gate=gate)


@step.command("decrypt")
@settings_file_option
@click.argument("file_name")
def decrypt_step(settings_file: Path, file_name: str) -> None:
    """Decrypt one downloaded file (FILE_NAME as in ghga_plan.tsv) to decrypted_dir."""
    decrypt_downloaded(state.load_settings(settings_file), file_name)


@step.command("report")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def report_step(output_dir: Path) -> None:
    """Write ghga_report.tsv from the plan and the per-file results."""
    report.write_report(output_dir)
