# ghga-tasks: bulk download of a GHGA work package.
#
#   snakemake --cores 1            downloads every file of the work package
#   snakemake --cores 1 -n         shows what would run
#
# Configuration: config/config.yaml (explained in config/README.md).
# The rules live in workflow/ (workflow/ghga_tasks.smk includes workflow/rules/*.smk).

from snakemake.utils import min_version

min_version("9.27")


configfile: "config/config.yaml"


include: "workflow/ghga_tasks.smk"


rule all:
    default_target: True
    input:
        f"{OUTPUT_DIR}/ghga_report.tsv",
