# Helpers for the download rules: config validation and the functions that read the plan.
# The logic lives in the ghga_tasks package (one code path with the CLI).

from pathlib import Path

from ghga_tasks.core import batch, jobs, shutdown, state
from ghga_tasks.core.report import write_report_after_failure
from ghga_tasks.core.locks import hold_run_lock
from ghga_tasks.core.plan import download_ranks, plan_path, read_plan
from ghga_tasks.core.settings import Settings, check_known_keys, normalize_config

from snakemake.logging import logger
from snakemake.utils import validate

# A typo in a key must not pass silently: name it and the nearest key (before the schema,
# whose message names neither). `--config skip_unavailable=true` arrives as the string
# "true": normalise before checking.
check_known_keys(
    config, source="config (config file, --config or the module's config:)"
)
config.update(normalize_config(config))
validate(config, "../schemas/config.schema.yaml", set_default=True)

SETTINGS = Settings.from_mapping(config)
OUTPUT_DIR = str(SETTINGS.output_dir)
STATE_DIR = f"{OUTPUT_DIR}/{state.STATE_DIR}"
LOG_DIR = f"{OUTPUT_DIR}/logs"


def downloads_run_locally() -> bool:
    """`localrule:` of the plan, download and report rules: under a cluster executor they
    stay on the submit host unless downloads_on_cluster is true (many clusters' compute
    nodes have no internet). Must be exactly True or False: Snakemake checks `is True`.
    """
    return not SETTINGS.downloads_on_cluster


def planned_plan(wildcards=None):
    """The plan file, once the checkpoint has written it (re-evaluates the DAG)."""
    return checkpoints.plan_downloads.get().output.plan


def planned_downloads(wildcards):
    """Every file the plan says to download, as <output_dir>/<file_name> targets."""
    return [
        f"{OUTPUT_DIR}/{entry.file_name}"
        for entry in read_plan(Path(planned_plan()))
        if entry.to_download
    ]


def download_priority(wildcards):
    """Plan order as a Snakemake priority (higher runs first): staged files first.

    Reads the plan file directly, not through the checkpoint: a download job submitted to
    a cluster evaluates this again without the checkpoint in its DAG, where `.get()` fails.
    """
    plan = plan_path(SETTINGS.output_dir)
    if not plan.exists():
        return 0
    return download_ranks(plan).get(wildcards.file_name, 0)


def warn_unless_jobs_in_threads(workflow):
    """Without --force-use-threads Snakemake starts a new Snakemake process for every
    download job (seconds per file): say how to avoid it."""
    if not workflow.use_threads:
        logger.warning(
            "ghga-tasks: each download job starts its own Snakemake process (slow for many "
            "files); run with --force-use-threads, as profiles/default does."
        )


def report_after_failure():
    """ghga_report.tsv after a failed run, if a plan was made: every file's outcome."""
    if plan_path(SETTINGS.output_dir).exists():
        write_report_after_failure(SETTINGS.output_dir)
        logger.error(
            f"ghga-tasks: every file's outcome is in {OUTPUT_DIR}/ghga_report.tsv"
        )


def directory_of_plan(wildcards, input):
    """The output directory, derived from an input so it also holds on remote executors."""
    return str(Path(input.plan).parent)
