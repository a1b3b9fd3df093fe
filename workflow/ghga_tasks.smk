# The ghga-tasks workflow without a default target: the repository's top-level Snakefile
# includes it and adds `rule all`; `ghga-tasks download` runs it directly with the report
# as target (it ships inside the package).
#
# The checkpoint `plan_downloads` probes every file (which starts staging at GHGA),
# then one `download_file` job per file writes <output_dir>/<file_id><ext>.c4gh,
# and `report` writes <output_dir>/ghga_report.tsv. `decrypt_file` makes
# <decrypted_dir>/<name> from <name>.c4gh when a rule asks for it (ghga_files()).


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/decrypt.smk"
