"""The batch steps the Snakemake rules and the click CLI both run: one code path.

    plan_batch      load the work package, check the key, probe, write ghga_plan.tsv
    plan_and_apply_skip_policy   the same, then the config's skip policy (the checkpoint)
    download_one    download one planned file, write its result record
    write_report    ghga_report.tsv from the plan and the result records

Files under ``<output_dir>/.ghga_tasks/`` are ours: the settings the plan step resolved
(so download jobs use exactly the same ones) and one JSON result record per file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .api import DownloadApi, make_session
from .download import DownloadResult, download_file, file_sha256
from .errors import ConfigurationError, FilesFailed, GhgaTasksError
from .keys import check_public_key
from .plan import (
    PLAN_FILE,
    PlanEntry,
    Status,
    apply_skip_policy,
    plan_downloads,
    read_plan,
    write_plan,
)
from .settings import Settings
from .work_package import FileSpec, WorkPackage, work_package_from_env
from .wps import WpsWorkPackage, work_order_download_api, work_package_from_wps

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

STATE_DIR = ".ghga_tasks"
SETTINGS_FILE = "settings.json"
REPORT_FILE = "ghga_report.tsv"
REPORT_COLUMNS = [
    "file_id",
    "file_name",
    "outcome",
    "bytes",
    "sha256",
    "seconds",
    "waited_seconds",
    "content_sha256",
    "started_at",
    "finished_at",
    "envelope_writer_key",
    "error",
]


def plan_path(output_dir: Path) -> Path:
    return output_dir / PLAN_FILE


def settings_path(output_dir: Path) -> Path:
    return output_dir / STATE_DIR / SETTINGS_FILE


def result_path(output_dir: Path, file_name: str) -> Path:
    return output_dir / STATE_DIR / "results" / f"{file_name}.json"


def failure_path(output_dir: Path, file_name: str) -> Path:
    return output_dir / STATE_DIR / "failures" / f"{file_name}.json"


def record_failure(output_dir: Path, file_name: str, error: GhgaTasksError) -> None:
    """Keep why a download failed, for the report and the CLI's exit code.

    Not a declared Snakemake output: Snakemake deletes those when a job fails.
    """
    path = failure_path(output_dir, file_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"file_name": file_name, "exit_code": error.exit_code, "error": str(error)}
    path.write_text(json.dumps(record) + "\n")


def files_failed(output_dir: Path) -> FilesFailed | None:
    """The failures of the files the current plan downloads, in plan order, as one error
    (None if none failed)."""
    planned = [e.file_name for e in read_plan(plan_path(output_dir)) if e.to_download]
    paths = [failure_path(output_dir, name) for name in planned]
    records = [json.loads(path.read_text()) for path in paths if path.exists()]
    if not records:
        return None
    return FilesFailed(
        errors=[str(r["error"]) for r in records], exit_codes=[int(r["exit_code"]) for r in records]
    )


def load_work_package(settings: Settings, environ: Mapping[str, str] | None = None) -> WorkPackage:
    """The one swappable source of work package info (``work_package_source``)."""
    if settings.work_package_source == "env":
        return work_package_from_env(environ)
    if settings.work_package_source == "wps":
        return work_package_from_wps(settings, environ)
    raise ConfigurationError(
        setting="work_package_source", problem=f"unknown source {settings.work_package_source!r}"
    )


def download_api(work_package: WorkPackage, settings: Settings) -> DownloadApi:
    if isinstance(work_package, WpsWorkPackage):
        return work_order_download_api(work_package, settings)  # a fresh WOT per call
    token = work_package.work_order_token
    return DownloadApi(
        work_package.download_api_url,
        session=make_session(retries=settings.range_retries),
        token_for=lambda _file_id: token,
        timeout=(settings.connect_timeout, settings.download_api_timeout),
        allow_http=settings.allow_http,
        url_setting=work_package.download_api_url_setting,
    )


def plan_batch(settings: Settings, environ: Mapping[str, str] | None = None) -> list[PlanEntry]:
    """Check the key, probe every file (starting staging), write the plan and settings."""
    work_package = load_work_package(settings, environ)
    check_public_key(settings.user_public_key, work_package.user_public_key)
    log.info("work package of user %s: %d file(s)", work_package.user_id, len(work_package.files))
    api = download_api(work_package, settings)
    api.check_health()
    entries = plan_downloads(work_package.files, api, settings.output_dir)
    write_plan(entries, plan_path(settings.output_dir))
    save_settings(settings)
    return entries


def plan_and_apply_skip_policy(settings: Settings) -> list[PlanEntry]:
    """The workflow's checkpoint: the plan, then the config's answer to the skip policy
    (``Cancelled`` unless the files to skip may be skipped)."""
    entries = plan_batch(settings)
    apply_skip_policy(
        entries,
        skip_downloaded=settings.skip_downloaded,
        skip_unavailable=settings.skip_unavailable,
    )
    return entries


def save_settings(settings: Settings) -> None:
    path = settings_path(settings.output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(settings.to_json() + "\n")


def load_settings(path: Path) -> Settings:
    try:
        return Settings.from_mapping(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise ConfigurationError(setting=str(path), problem=f"unreadable ({error})") from None


def download_one(
    settings: Settings,
    file_name: str,
    environ: Mapping[str, str] | None = None,
    *,
    opened: OpenWorkPackage | None = None,
) -> DownloadResult:
    """Download the planned file ``file_name`` and record the result (or the failure).

    ``opened``: the work package and its Download API client from an earlier job of this
    process (see ``jobs``); by default they are loaded for this file alone.
    """
    failure_path(settings.output_dir, file_name).unlink(missing_ok=True)
    try:
        return _download_and_record(
            settings, file_name, opened or open_work_package(settings, environ)
        )
    except GhgaTasksError as error:
        record_failure(settings.output_dir, file_name, error)
        raise


@dataclass(frozen=True)
class OpenWorkPackage:
    """A loaded work package whose archive key matched the user's, and its API client."""

    work_package: WorkPackage
    api: DownloadApi


def open_work_package(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> OpenWorkPackage:
    work_package = load_work_package(settings, environ)
    check_public_key(settings.user_public_key, work_package.user_public_key)
    return OpenWorkPackage(work_package, download_api(work_package, settings))


def _download_and_record(
    settings: Settings, file_name: str, opened: OpenWorkPackage
) -> DownloadResult:
    entry = _planned_entry(settings.output_dir, file_name)
    spec = _spec_in_package(opened.work_package, entry)
    result = download_file(spec, opened.work_package, settings, opened.api, retry_at=entry.retry_at)
    record = result_path(settings.output_dir, file_name)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def _planned_entry(output_dir: Path, file_name: str) -> PlanEntry:
    for entry in read_plan(plan_path(output_dir)):
        if entry.file_name == file_name:
            return entry
    raise ConfigurationError(setting=file_name, problem=f"is not in {plan_path(output_dir)}")


def _spec_in_package(work_package: WorkPackage, entry: PlanEntry) -> FileSpec:
    for spec in work_package.files:
        if spec.file_name == entry.file_name:
            return spec
    raise ConfigurationError(
        setting=entry.file_name, problem="was planned but is no longer in the work package"
    )


def write_report(output_dir: Path) -> pd.DataFrame:
    """One row per planned file, in plan order, from the result records."""
    import pandas as pd  # here: the download jobs that import this module never need it

    rows = [_report_row(output_dir, entry) for entry in read_plan(plan_path(output_dir))]
    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    path = output_dir / REPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return frame


def write_report_after_failure(output_dir: Path) -> None:
    """The report of a run that stopped with failed files, if a plan was made.

    Dated a second before the plan: Snakemake sees a report newer than its inputs as done
    and would not even look for the missing files on the next run; a report older than
    the plan is re-made, after those files are downloaded.
    """
    plan = plan_path(output_dir)
    if not plan.exists():
        return
    write_report(output_dir)
    before_plan = plan.stat().st_mtime - 1
    os.utime(output_dir / REPORT_FILE, (before_plan, before_plan))


def _report_row(output_dir: Path, entry: PlanEntry) -> dict[str, object]:
    row: dict[str, object] = {
        "file_id": entry.file_id,
        "file_name": entry.file_name,
        "outcome": "failed",
        "bytes": 0,
        "sha256": "",
        "seconds": 0.0,
        "waited_seconds": 0.0,
        "content_sha256": entry.sha256,
        "started_at": "",
        "finished_at": "",
        "envelope_writer_key": "",
        "error": "",
    }
    final = output_dir / entry.file_name
    record = result_path(output_dir, entry.file_name)
    failure = failure_path(output_dir, entry.file_name)
    if entry.status == Status.UNAVAILABLE:
        row.update(outcome="skipped_unavailable", error=entry.reason)
    elif entry.status == Status.DOWNLOADED:
        present = final.exists()
        row.update(
            outcome="skipped_downloaded",
            bytes=final.stat().st_size if present else 0,
            sha256=file_sha256(final) if present else "",
        )
    elif failure.exists():
        row["error"] = json.loads(failure.read_text())["error"]
    elif record.exists() and final.exists():
        result = json.loads(record.read_text())
        row.update({k: v for k, v in result.items() if k in row and v is not None})
        row["outcome"] = "downloaded"
    else:
        row["error"] = "not downloaded: the run stopped before this file"
    return row
