"""The batch steps the Snakemake rules and the click CLI both run: one code path.

    load_work_package            the one swappable source of the work package
    plan_batch                   check the key, probe every file, write ghga_plan.tsv
    plan_and_apply_skip_policy   the same, then the config's skip policy (the checkpoint)
    open_work_package            the work package and its Download API client, for jobs
    download_one                 download one planned file, record the result or failure

The plan lives in ``plan``, what we keep about the output directory in ``state``, and the
report in ``report``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import state
from .api import DownloadApi, make_session
from .download import DownloadResult, download_file
from .errors import ConfigurationError, GhgaTasksError, Interrupted
from .keys import check_public_key
from .plan import (
    PlanEntry,
    apply_skip_policy,
    plan_downloads,
    plan_path,
    planned_entries,
    write_plan,
)
from .report import human_bytes
from .resume import kept_note
from .settings import Settings
from .work_package import PART_SUFFIX, FileSpec, WorkPackage, work_package_from_env
from .wps import WpsWorkPackage, work_order_download_api, work_package_from_wps

log = logging.getLogger(__name__)


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
    """Check the key, probe every file (starting staging), write the plan and settings.

    Without ``environ`` the work package is this process's shared one: the download jobs
    that follow in the same process (the CLI, or Snakemake's threads) reuse its work
    order tokens and connections instead of asking for them again."""
    opened = (
        open_work_package(settings, environ)
        if environ is not None
        else shared_work_package(settings)
    )
    work_package, api = opened.work_package, opened.api
    log.info("work package of user %s: %d file(s)", work_package.user_id, len(work_package.files))
    api.check_health()
    entries = plan_downloads(work_package.files, api, settings.output_dir)
    write_plan(entries, plan_path(settings.output_dir))
    state.save_settings(settings)
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


def download_one(
    settings: Settings,
    file_name: str,
    environ: Mapping[str, str] | None = None,
    *,
    opened: OpenWorkPackage | None = None,
    gate: str = "",
) -> DownloadResult:
    """Download the planned file ``file_name`` and record the result (or the failure).

    ``opened``: the work package and its Download API client from an earlier job of this
    process (see ``jobs``); by default they are loaded for this file alone. ``gate``: the
    release marker the job waited for, as Snakemake gave it (``release``), kept in the
    result record.
    """
    state.clear_failure(settings.output_dir, file_name)
    try:
        return _download_and_record(
            settings, file_name, opened or open_work_package(settings, environ), gate
        )
    except GhgaTasksError as error:
        state.record_failure(settings.output_dir, file_name, error)
        raise
    except KeyboardInterrupt:  # a stop request: the summary names the file interrupted
        part = settings.output_dir / (file_name + PART_SUFFIX)
        interrupted = Interrupted(kept=kept_note(part, human_bytes))
        state.record_failure(settings.output_dir, file_name, interrupted)
        raise interrupted from None


@dataclass(frozen=True)
class OpenWorkPackage:
    """A loaded work package whose archive key matched the user's, and its API client."""

    work_package: WorkPackage
    api: DownloadApi
    # Its files by output name: a job finds its own in O(1), not by a walk over the batch.
    by_name: dict[str, FileSpec] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_name = {spec.file_name: spec for spec in self.work_package.files}
        object.__setattr__(self, "by_name", by_name)


def open_work_package(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> OpenWorkPackage:
    work_package = load_work_package(settings, environ)
    check_public_key(settings.user_public_key, work_package.user_public_key)
    return OpenWorkPackage(work_package, download_api(work_package, settings))


def shared_work_package(settings: Settings) -> OpenWorkPackage:
    """:func:`open_work_package` once per process, for as long as the settings and the
    ``GHGA_*`` variables stay the same. The skip policy is left out of that comparison:
    the CLI answers it after the plan, and it has no say in the work package."""
    ghga_env = sorted((k, v) for k, v in os.environ.items() if k.startswith("GHGA_"))
    opening = replace(settings, skip_downloaded=False, skip_unavailable=False)
    return _opened(opening, tuple(ghga_env))


@functools.lru_cache(maxsize=4)
def _opened(settings: Settings, _env: tuple[tuple[str, str], ...]) -> OpenWorkPackage:
    return open_work_package(settings)  # ``_env`` only keys the cache


def _download_and_record(
    settings: Settings, file_name: str, opened: OpenWorkPackage, gate: str
) -> DownloadResult:
    entry = _planned_entry(settings.output_dir, file_name)
    spec = _spec_in_package(opened, entry)
    result = download_file(spec, opened.work_package, settings, opened.api, retry_at=entry.retry_at)
    # The release marker this job waited for stays the file's gate for good (see release).
    state.record_result(settings.output_dir, file_name, {**asdict(result), "gate": gate})
    return result


def _planned_entry(output_dir: Path, file_name: str) -> PlanEntry:
    entry = planned_entries(plan_path(output_dir)).get(file_name)
    if entry is None:
        raise ConfigurationError(setting=file_name, problem=f"is not in {plan_path(output_dir)}")
    return entry


def _spec_in_package(opened: OpenWorkPackage, entry: PlanEntry) -> FileSpec:
    spec = opened.by_name.get(entry.file_name)
    if spec is not None:
        return spec
    raise ConfigurationError(
        setting=entry.file_name, problem="was planned but is no longer in the work package"
    )
