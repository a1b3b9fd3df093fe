# Helpers for the download rules: config validation and the functions that read the plan.
# The logic lives in the ghga_tasks package (one code path with the CLI).

import shlex
from pathlib import Path

from ghga_tasks.core import jobs, release, state
from ghga_tasks.core.locks import check_output_dir
from ghga_tasks.core.plan import delivered_names, download_ranks, plan_path, read_plan
from ghga_tasks.core.settings import Settings, check_known_keys, normalize_config
from ghga_tasks.snakemake_support import limit_resource, start_of_run

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
# A file in the way, no permission, a read-only file system: one line, before any job.
check_output_dir(SETTINGS.output_dir)
OUTPUT_DIR = str(SETTINGS.output_dir)
STATE_DIR = f"{OUTPUT_DIR}/{state.STATE_DIR}"
LOG_DIR = f"{OUTPUT_DIR}/logs"
DECRYPTED_DIR = str(SETTINGS.decrypted_dir)


def downloads_run_locally() -> bool:
    """`localrule:` of the plan, download and report rules: under a cluster executor they
    stay on the submit host unless downloads_on_cluster is true (many clusters' compute
    nodes have no internet). Must be exactly True or False: Snakemake checks `is True`.
    """
    return not SETTINGS.downloads_on_cluster


def planned_plan(wildcards=None):
    """The plan file, once the checkpoint has written it (re-evaluates the DAG).

    The first call of a run takes the run's guarantees (lock, stop on signals): Snakemake
    calls it while it builds the DAG, before any job, in a module too.
    """
    start_of_run(workflow, SETTINGS.output_dir, logger)
    return checkpoints.plan_downloads.get().output.plan


def planned_downloads(wildcards):
    """What the batch (the report) waits for: every file the plan says to download, as
    <output_dir>/<file_name>; with keep_encrypted: false, every delivered file decrypted
    (its .c4gh is a temporary file then)."""
    if not SETTINGS.keep_encrypted:
        return ghga_files("decrypted")(wildcards)
    return [
        f"{OUTPUT_DIR}/{entry.file_name}"
        for entry in read_plan(Path(planned_plan()))
        if entry.to_download
    ]


# --- for your own rules (docs/downstream.md) -------------------------------------------


def ghga_names(extension=""):
    """The work package's files this run delivers (downloaded now or before), in plan
    order, as decrypted names: GHGAF1.bam for GHGAF1.bam.c4gh. Skipped and unavailable
    files are left out. With extension=".bam": only BAMs, named without it (GHGAF1).
    Call it inside an input function: it waits for the plan (the checkpoint).
    """
    return delivered_names(read_plan(Path(planned_plan())), extension)


def ghga_files(kind="decrypted", extension=""):
    """An input function for your rules: the paths of the delivered files, decrypted
    (<decrypted_dir>/<name>, made by decrypt_file) or encrypted (<output_dir>/<name>.c4gh).
    """
    if kind not in ("decrypted", "encrypted"):
        raise ValueError(
            f"ghga_files: kind must be 'decrypted' or 'encrypted', not {kind!r}"
        )
    pattern = (
        f"{DECRYPTED_DIR}/{{}}{extension}"
        if kind == "decrypted"
        else f"{OUTPUT_DIR}/{{}}{extension}.c4gh"
    )

    def files(wildcards):
        return [pattern.format(name) for name in ghga_names(extension)]

    return files


def download_priority(wildcards):
    """Plan order as a Snakemake priority (higher runs first): staged files first.

    Reads the plan file directly, not through the checkpoint: a download job submitted to
    a cluster evaluates this again without the checkpoint in its DAG, where `.get()` fails.
    """
    start_of_run(workflow, SETTINGS.output_dir, logger)
    plan = plan_path(SETTINGS.output_dir)
    if not plan.exists():
        return 0
    return download_ranks(plan).get(wildcards.file_name, 0)


def release_gate(wildcards):
    """The release marker of the file's batch (ghga_tasks/core/release.py): Snakemake sees
    a few download jobs at a time instead of all of them. ancient: a marker touched later
    never makes a finished download run again."""
    start_of_run(workflow, SETTINGS.output_dir, logger)
    gate = release.gate(SETTINGS.output_dir, wildcards.file_name)
    return [ancient(f"{OUTPUT_DIR}/{gate}")] if gate else []


def previous_release(wildcards):
    """Each release waits for the one before it, never for a download."""
    previous = release.previous_marker(wildcards.run, int(wildcards.batch))
    return [ancient(f"{OUTPUT_DIR}/{previous}")] if previous else []


def run_step(step_args, log_file, in_process):
    """The one place that decides how a job of ours runs. With downloads_on_cluster: as a
    `ghga-tasks step ...` process of its own, which a cluster executor submits and signals
    (its SIGTERM removes the .part too). Otherwise `in_process()`, in this Snakemake
    process (a thread with --force-use-threads): milliseconds instead of a Python start-up.
    """
    if not SETTINGS.downloads_on_cluster:
        in_process()
        return
    command = " ".join(
        shlex.quote(str(arg)) for arg in ["ghga-tasks", "step", *step_args]
    )
    command += f" > {shlex.quote(str(log_file))} 2>&1"
    # shell() formats {...} itself: the settings JSON's braces must reach the shell as is.
    shell(command.replace("{", "{{").replace("}", "}}"))


def directory_of_plan(wildcards, input):
    """The output directory, derived from an input so it also holds on remote executors."""
    return str(Path(input.plan).parent)


# Never two downloads at once, whatever --cores or the executor allows: one file uses
# several connections already. Set here because it wins over the command line.
limit_resource(workflow, "downloads", 1)
