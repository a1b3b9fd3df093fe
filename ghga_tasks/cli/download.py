"""``ghga-tasks download`` and ``ghga-tasks plan``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
from pathlib import Path

import click

from ghga_tasks.core import batch, report, shutdown, state
from ghga_tasks.core.errors import Cancelled, WorkflowFailed
from ghga_tasks.core.locks import check_output_dir, hold_run_lock
from ghga_tasks.core.plan import SKIP_HEADINGS, PlanEntry, Status, bytes_needed
from ghga_tasks.core.report import human_bytes
from ghga_tasks.core.settings import Settings
from ghga_tasks.core.wps import ENV_DOWNLOAD_TOKEN, download_token_from

from .options import build_settings
from .progress import ProgressWatcher
from .workflow import import_snakemake_in_background, run_workflow

config_file_option = click.option(
    "--config-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Workflow config YAML (default: config/config.yaml here, if present).",
)
config_values_option = click.option(
    "--config",
    "config_values",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a config key, as snakemake --config does (repeatable), e.g. "
    "--config work_package_source=wps.",
)
output_dir_option = click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The download location (config key output_dir; default: downloads).",
)


def stdin_is_interactive() -> bool:
    """Whether a person can answer a prompt (tests replace this)."""
    return sys.stdin.isatty()


def ensure_download_token(settings: Settings) -> None:
    """``wps`` only: without a token file or ``GHGA_DOWNLOAD_TOKEN``, ask for the token with
    a hidden prompt. It goes into this process's environment, never onto a command line,
    so the workflow's jobs inherit it."""
    configured = settings.download_token_file or os.environ.get(ENV_DOWNLOAD_TOKEN, "").strip()
    if settings.work_package_source != "wps" or configured or not stdin_is_interactive():
        return  # without a terminal, loading the work package names what is missing
    token = download_token_from(
        settings,
        {},
        ask=lambda: str(
            click.prompt("Paste the download token from the GHGA data portal", hide_input=True)
        ),
    )
    os.environ[ENV_DOWNLOAD_TOKEN] = f"{token.work_package_id}:{token.sealed_access_token}"


def ask_skip(entries: list[PlanEntry], status: Status, preset: bool, flag: str) -> bool:
    """Show the files with ``status``; return whether to skip them (or cancel)."""
    listed = [e for e in entries if e.status == status]
    if not listed:
        return preset
    heading = SKIP_HEADINGS[status]
    click.echo(f"\n{len(listed)} file(s) {heading}:")
    for entry in listed:
        click.echo(
            f"  {entry.file_name}: {entry.reason}" if entry.reason else f"  {entry.file_name}"
        )
    if preset:
        click.echo(f"Skipping them ({flag}).")
        return True
    if not stdin_is_interactive():
        raise Cancelled(f"{len(listed)} file(s) {heading}; pass {flag} to skip them")
    if click.confirm("Skip these files and download the rest? (No cancels the run)", default=False):
        return True
    raise Cancelled("cancelled: nothing was downloaded")


def show_plan(entries: list[PlanEntry], output_dir: Path) -> None:
    """The plan as a table, then the totals and a disk-space check."""
    click.echo(f"{'file':<40} {'size':>10}  {'status':<12} wait")
    for e in entries:
        size = human_bytes(e.size) if e.size >= 0 else "?"
        wait = f"{e.retry_after:.0f} s" if e.status == Status.STAGING else ""
        click.echo(f"{e.file_name:<40} {size:>10}  {e.status:<12} {wait}")
    needed = bytes_needed(entries, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(output_dir).free
    count = sum(e.to_download for e in entries)
    click.echo(
        f"\n{count} file(s) to download, {human_bytes(needed)} known so far; "
        f"{human_bytes(free)} free in {output_dir}"
    )
    if needed > free:
        click.echo("Warning: not enough free space for this batch.", err=True)


def show_report(output_dir: Path) -> None:
    click.echo("")
    for line in report.summary_lines(output_dir):
        click.echo(line)


@click.command()
@output_dir_option
@click.option("--skip-downloaded", is_flag=True, help="Skip files that already exist.")
@click.option("--skip-unavailable", is_flag=True, help="Skip files that can't be downloaded.")
@click.option("--yes", "-y", is_flag=True, help="Answer both questions with 'skip'.")
@click.option(
    "--resume",
    is_flag=True,
    help="Keep an interrupted file's .part and continue it on the next run "
    "(config key resume_partial).",
)
@click.option(
    "--cores", default=1, show_default=True, help="Snakemake cores (downloads stay one at a time)."
)
@config_file_option
@config_values_option
@click.pass_context
def download(
    ctx: click.Context,
    output_dir: Path | None,
    skip_downloaded: bool,
    skip_unavailable: bool,
    yes: bool,
    resume: bool,
    cores: int,
    config_file: Path | None,
    config_values: tuple[str, ...],
) -> None:
    """Plan the batch, ask about existing and unavailable files, then download the rest
    with the Snakemake workflow (one file at a time, several connections each)."""
    settings = build_settings(
        config_file, config_values, output_dir=output_dir, resume_partial=resume or None
    )
    download_batch(
        settings,
        skip_downloaded=skip_downloaded or yes or settings.skip_downloaded,
        skip_unavailable=skip_unavailable or yes or settings.skip_unavailable,
        cores=cores,
        verbose=bool(ctx.obj["verbose"]),
        quiet=ctx.obj["quiet"],
    )


def download_batch(
    settings: Settings,
    *,
    workdir: Path | None = None,
    skip_downloaded: bool,
    skip_unavailable: bool,
    cores: int,
    verbose: bool,
    quiet: bool = False,
) -> None:
    """Plan, settle the skip questions (asking where no answer was given), download."""
    import_snakemake_in_background()  # overlaps the probes below: ~1 s sooner to the bytes
    check_output_dir(settings.output_dir)
    hold_run_lock(settings.output_dir)  # before anything is planned or written
    ensure_download_token(settings)
    entries = batch.plan_batch(settings)
    settings = dataclasses.replace(
        settings,
        skip_downloaded=ask_skip(entries, Status.PRESENT, skip_downloaded, "--skip-downloaded"),
        skip_unavailable=ask_skip(
            entries, Status.UNAVAILABLE, skip_unavailable, "--skip-unavailable"
        ),
    )
    state.save_settings(settings)
    click.echo(f"\n{_what_runs(entries, settings.output_dir)}")
    _run_and_report(settings, entries, cores=cores, verbose=verbose, quiet=quiet, workdir=workdir)


def _what_runs(entries: list[PlanEntry], output_dir: Path) -> str:
    """The line before the downloads: how many, and how many an earlier run finished."""
    count = sum(e.to_download for e in entries)
    done = sum(e.status == Status.DOWNLOADED for e in entries)
    earlier = f"{done} file(s) already downloaded by an earlier run" if done else ""
    if not count:
        return f"Nothing to download{': ' + earlier if earlier else ''}."
    return f"Downloading {count} file(s) to {output_dir}{f' ({earlier})' if earlier else ''}"


def _run_and_report(
    settings: Settings,
    entries: list[PlanEntry],
    *,
    cores: int,
    verbose: bool,
    quiet: bool,
    workdir: Path | None,
) -> None:
    progress = contextlib.nullcontext() if quiet else ProgressWatcher(settings.output_dir, entries)
    try:
        with progress:
            run_workflow(settings, cores=cores, verbose=verbose, workdir=workdir)
    except WorkflowFailed as failed:
        report.write_report_after_failure(settings.output_dir)
        show_report(settings.output_dir)
        if shutdown.REQUESTED.is_set():  # Ctrl-C or SIGTERM, whatever else failed meanwhile
            raise report.interruption(settings.output_dir) from None
        raise report.files_failed(settings.output_dir) or failed from None
    show_report(settings.output_dir)


@click.command()
@output_dir_option
@config_file_option
@config_values_option
def plan(output_dir: Path | None, config_file: Path | None, config_values: tuple[str, ...]) -> None:
    """Probe every file (this starts staging) and show the plan; downloads nothing."""
    settings = build_settings(config_file, config_values, output_dir=output_dir)
    check_output_dir(settings.output_dir)
    hold_run_lock(settings.output_dir)  # a running batch's plan is not rewritten under it
    ensure_download_token(settings)
    show_plan(batch.plan_batch(settings), settings.output_dir)
