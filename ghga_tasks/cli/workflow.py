"""Running the packaged Snakemake workflow from the CLI, through Snakemake's Python API.

The CLI never downloads by itself: ``ghga-tasks download`` plans, asks, and then runs the
same rules ``snakemake --cores 1`` runs, so both paths share every guarantee.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ghga_tasks import snakemake_support
from ghga_tasks.core.errors import WorkflowFailed
from ghga_tasks.core.report import REPORT_FILE
from ghga_tasks.core.settings import Settings

log = logging.getLogger(__name__)


def _put_this_python_on_path() -> None:
    """Jobs run ``ghga-tasks step …`` in a shell: make it the ghga-tasks of this very
    environment, even when the user ran ``.venv/bin/ghga-tasks`` without activating."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def packaged_snakefile() -> Path:
    """The workflow shipped in the package (``ghga_tasks.workflow``, mapped from the
    repository's ``workflow/``); from a source checkout on ``sys.path``, that folder."""
    return _shipped("workflow", "ghga_tasks.smk")


def default_profile() -> dict[str, Any]:
    """``profiles/default/config.yaml``, the profile ``snakemake`` loads by itself."""
    return dict(yaml.safe_load(_shipped("profiles", "default/config.yaml").read_text()))


def _shipped(folder: str, name: str) -> Path:
    try:
        return Path(str(files(f"ghga_tasks.{folder}").joinpath(name)))
    except ModuleNotFoundError:  # an editable install maps no data packages
        return Path(__file__).resolve().parents[2] / folder / name


# The default profile's keys and what each becomes in Snakemake's API. A key added to the
# profile without a line here fails the test that loads the profile (not silently ignored).
PROFILE_KEYS = {
    "scheduler": "the scheduling settings' scheduler",
    "force-use-threads": "the execution settings' use_threads",
    "keep-going": "the execution settings' keep_going",
    "rerun-triggers": "the DAG settings' rerun_triggers",
    "nolock": "the execution settings' lock (negated)",
    "resources": "none: the workflow itself limits downloads to 1 (it wins anyway)",
}


def profile_settings(profile: dict[str, Any]) -> dict[str, Any]:
    """The default profile in the API's terms (see ``PROFILE_KEYS``)."""
    unknown = set(profile) - set(PROFILE_KEYS)
    if unknown:
        raise ValueError(f"profiles/default has keys the CLI does not pass on: {unknown}")
    return {
        "scheduler": str(profile["scheduler"]),
        "use_threads": bool(profile["force-use-threads"]),
        "keep_going": bool(profile["keep-going"]),
        "rerun_triggers": [str(trigger) for trigger in profile["rerun-triggers"]],
        "lock": not profile["nolock"],
    }


def import_snakemake_in_background() -> None:
    """Start importing Snakemake (1-2 s of CPU) now, while the plan's probes wait on the
    network and the prompts on the user; ``run_workflow`` then finds it loaded. Python's
    per-module import locks make the two imports safe; a failure here is met again, and
    reported, by ``run_workflow``'s own import."""
    threading.Thread(target=_import_snakemake, name="ghga-tasks-import", daemon=True).start()


def _import_snakemake() -> None:
    with contextlib.suppress(Exception):
        import snakemake.api
        import snakemake.settings.types  # noqa: F401


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
    profile = profile_settings(default_profile())
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
            triggers = {RerunTrigger.parse_choice(t) for t in profile["rerun_triggers"]}
            dag = workflow.dag(DAGSettings(targets={target}, rerun_triggers=triggers))
            dag.execute_workflow(
                execution_settings=ExecutionSettings(
                    use_threads=profile["use_threads"],
                    keep_going=profile["keep_going"],
                    # No Snakemake lock: ours keeps a second run out and dies with the run.
                    lock=profile["lock"],
                ),
                scheduling_settings=SchedulingSettings(scheduler=profile["scheduler"]),
                scheduler_settings=GreedySchedulerSettings(),
            )
    except WorkflowError as error:
        log.debug("Snakemake: %s", error)
        raise WorkflowFailed(
            f"a workflow step failed; its log is under {settings.output_dir / 'logs'} "
            "(run with -v to see Snakemake's own output)"
        ) from None
