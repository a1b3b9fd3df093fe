"""All BAMs in one table, plus the files of the work package that were not delivered."""

import csv
import sys

snakemake = globals()["snakemake"]  # injected by Snakemake's script: directive
sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115 - the log lives as long as the job


def rows(path):
    with open(path) as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


with open(snakemake.output[0], "w") as out:
    out.write("sample\treferences\theader_lines\tsha256\n")
    for path in snakemake.input.headers:
        for row in rows(path):
            out.write("\t".join(row.values()) + "\n")
for row in rows(snakemake.input.report):
    if row["outcome"].startswith("skipped"):
        print(f"not analysed: {row['file_name']}: {row['outcome']} {row['error']}", file=sys.stderr)
print(f"{len(snakemake.input.headers)} BAM file(s) summarised", file=sys.stderr)
