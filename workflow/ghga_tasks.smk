# The ghga-tasks workflow without a default target: the repository's top-level Snakefile
# includes it and adds `rule all`; `ghga-tasks download` runs it directly with the report
# as target (it ships inside the package).
#
# The checkpoint `plan_downloads` probes every file (which starts staging at GHGA),
# then one `download_file` job per file writes <output_dir>/<file_id><ext>.c4gh,
# and `report` writes <output_dir>/ghga_report.tsv.


include: "rules/common.smk"
include: "rules/download.smk"


# One run per output directory: another snakemake (from another working directory, which
# Snakemake's own lock does not cover) or ghga-tasks download is refused before any job.
onstart:
    hold_run_lock(SETTINGS.output_dir)
    # Download jobs are threads here, which signals never reach: Ctrl-C and SIGTERM
    # first ask them to stop (each removes its .part), then reach Snakemake as before.
    shutdown.stop_on_signals()
    warn_unless_jobs_in_threads(workflow)


# A failed download (with keep-going, as profiles/default sets) leaves the report rule
# without its inputs: write the report anyway, so it says what happened to every file.
onerror:
    report_after_failure()


# Never two downloads at once, whatever --cores or the executor allows: one file uses
# several connections already. Set here because it wins over the command line.
workflow.global_resources.update({"downloads": 1})
