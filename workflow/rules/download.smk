# The batch download: plan (checkpoint), one job per file, report.
#
# Every job runs in this Snakemake process (a thread, with --force-use-threads as
# profiles/default sets): milliseconds per file instead of a Python start-up. With
# downloads_on_cluster each job is a `ghga-tasks step ...` process instead, which a cluster
# executor submits and can signal (SLURM's SIGTERM removes the .part there too).


checkpoint plan_downloads:
    output:
        plan=f"{OUTPUT_DIR}/ghga_plan.tsv",
        settings=f"{STATE_DIR}/settings.json",
    log:
        f"{LOG_DIR}/plan_downloads.log",
    localrule: downloads_run_locally()
    conda:
        "../envs/ghga_tasks.yaml"
    params:
        settings=SETTINGS.to_json(),
    run:
        run_step(
            ["plan", "--settings", params.settings],
            log[0],
            lambda: jobs.plan(params.settings, Path(log[0])),
        )


rule download_file:
    input:
        release=release_gate,
    output:
        # keep_encrypted: false lets Snakemake remove it once decrypt_file has verified
        # the decrypted copy (a failed decryption keeps it).
        c4gh=(
            f"{OUTPUT_DIR}/{{file_name}}"
            if SETTINGS.keep_encrypted
            else temp(f"{OUTPUT_DIR}/{{file_name}}")
        ),
        result=f"{STATE_DIR}/results/{{file_name}}.json",
    log:
        f"{LOG_DIR}/download/{{file_name}}.log",
    wildcard_constraints:
        file_name=r"[A-Za-z0-9][A-Za-z0-9._+-]*\.c4gh",
    priority: download_priority
    localrule: downloads_run_locally()
    conda:
        "../envs/ghga_tasks.yaml"
    resources:
        downloads=1,
    params:
        # A fixed path, not the settings themselves: a changed setting must not make
        # Snakemake re-download files that are already complete.
        settings=f"{STATE_DIR}/settings.json",
    run:
        gate = release.given_gate(OUTPUT_DIR, input.release)
        run_step(
            [
                "download",
                "--settings",
                params.settings,
                "--gate",
                gate,
                wildcards.file_name,
            ],
            log[0],
            lambda: jobs.download(
                Path(params.settings), wildcards.file_name, Path(log[0]), gate
            ),
        )


# Releases the download jobs of one batch (see release_gate): no code, Snakemake creates
# the marker. Lowest priority and the downloads resource: it runs only when no released
# download is waiting, so Snakemake only ever weighs a few ready jobs.
rule release_downloads:
    input:
        previous_release,
    output:
        touch(f"{STATE_DIR}/{release.RELEASE_DIR}/{{run}}/{{batch}}"),
    wildcard_constraints:
        run=r"[0-9a-z]+",
        batch=r"\d+",
    priority: 0
    localrule: True
    resources:
        downloads=1,


rule report:
    input:
        plan=planned_plan,
        downloads=planned_downloads,
    output:
        f"{OUTPUT_DIR}/ghga_report.tsv",
    log:
        f"{LOG_DIR}/report.log",
    localrule: downloads_run_locally()
    conda:
        "../envs/ghga_tasks.yaml"
    params:
        output_dir=directory_of_plan,
    run:
        run_step(
            ["report", "--output-dir", params.output_dir],
            log[0],
            lambda: jobs.report(Path(params.output_dir), Path(log[0])),
        )
