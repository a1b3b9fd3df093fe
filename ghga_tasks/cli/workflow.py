"""Running the packaged Snakemake workflow from the CLI, through Snakemake's Python API.

The CLI never downloads by itself: ``ghga-tasks download`` plans, asks, and then runs the
same rules ``snakemake --cores 1`` runs, so both paths share every guarantee.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.resources import files
from pathlib import Path

from ghga_tasks import snakemake_support
from ghga_tasks.core.errors import GhgaTasksError
from ghga_tasks.core.report import REPORT_FILE
from ghga_tasks.core.settings import Settings

log = logging.getLogger(__name__)


class WorkflowFailed(GhgaTasksError):
    """Snakemake stopped with a failed job; the job's own error is in its log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


def _put_this_python_on_path() -> None:
    """Jobs run ``ghga-tasks step …`` in a shell: make it the ghga-tasks of this very
    environment, even when the user ran ``.venv/bin/ghga-tasks`` without activating."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def packaged_snakefile() -> Path:
    """The workflow shipped in the package (``ghga_tasks.workflow``, mapped from the
    repository's ``workflow/``); from a source checkout on ``sys.path``, that folder."""
    try:
        return Path(str(files("ghga_tasks.workflow").joinpath("ghga_tasks.smk")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "workflow" / "ghga_tasks.smk"


def run_workflow(
    settings: Settings, *, cores: int, verbose: bool, workdir: Path | None = None
) -> None:
    """Run the download rules for ``settings`` in ``workdir`` (default: here)."""
    _put_this_python_on_path()
    snakemake_support.summary_printed_by_caller()  # our summary, printed once
    # Snakemake's own lines are for debugging (-v): printed by its own handler, once;
    # users see our progress and summary.
    logging.getLogger("snakemake").propagate = False
    # Imported here: Snakemake takes a second to import and most commands don't need it.
    from snakemake.api import GreedySchedulerSettings, SnakemakeApi
    from snakemake.exceptions import WorkflowError
    from snakemake.settings.enums import Quietness, RerunTrigger
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
        SchedulingSettings,
    )

    quiet = None if verbose else {Quietness.ALL}
    config = {key: str(v) if isinstance(v, Path) else v for key, v in settings.as_dict().items()}
    target = str(settings.output_dir / REPORT_FILE)
    try:
        with SnakemakeApi(OutputSettings(quiet=quiet, show_failed_logs=verbose)) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(cores=cores),
                config_settings=ConfigSettings(config=config),
                snakefile=packaged_snakefile(),
                workdir=workdir or Path.cwd(),
            )
            dag = workflow.dag(
                DAGSettings(
                    targets={target},
                    # Same as profiles/default: upgrading ghga-tasks never re-downloads.
                    rerun_triggers={RerunTrigger.MTIME, RerunTrigger.PARAMS, RerunTrigger.INPUT},
                )
            )
            dag.execute_workflow(
                # Same as profiles/default: download jobs are threads, not processes, and
                # one failed file does not stop the others.
                execution_settings=ExecutionSettings(use_threads=True, keep_going=True),
                scheduling_settings=SchedulingSettings(scheduler="greedy"),
                scheduler_settings=GreedySchedulerSettings(),
            )
    except WorkflowError as error:
        log.debug("Snakemake: %s", error)
        raise WorkflowFailed(
            f"a workflow step failed; its log is under {settings.output_dir / 'logs'} "
            "(run with -v to see Snakemake's own output)"
        ) from None
