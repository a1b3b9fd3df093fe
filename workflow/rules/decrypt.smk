# Decrypted per-file targets: <decrypted_dir>/<name> from <output_dir>/<name>.c4gh.
#
# Runs only when something asks for a decrypted file: your own rules (ghga_files() in
# common.smk, docs/downstream.md) or keep_encrypted: false. Decryption uses CPU, not the
# network: these jobs may run beside each other and beside the next download (no
# `downloads` resource), and under a cluster executor they are submitted as jobs.


rule decrypt_file:
    input:
        c4gh=f"{OUTPUT_DIR}/{{name}}.c4gh",
    output:
        f"{DECRYPTED_DIR}/{{name}}",
    log:
        f"{LOG_DIR}/decrypt/{{name}}.log",
    wildcard_constraints:
        name=r"[A-Za-z0-9][A-Za-z0-9._+-]*",
    conda:
        "../envs/ghga_tasks.yaml"
    params:
        # A fixed path, as for download_file: a changed setting decrypts nothing again.
        settings=f"{STATE_DIR}/settings.json",
        file_name=lambda wildcards: f"{wildcards.name}.c4gh",
    run:
        run_step(
            ["decrypt", "--settings", params.settings, params.file_name],
            log[0],
            lambda: jobs.decrypt(
                Path(params.settings), params.file_name, Path(log[0])
            ),
        )
