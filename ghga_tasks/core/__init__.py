"""The core: no click, no snakemake, no printing. Returns values or raises GhgaTasksError."""
