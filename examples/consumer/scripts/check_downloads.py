"""The consumer's own analysis step: re-hash each downloaded file against the report."""

import csv
import hashlib
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's script: directive
sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115 - the log lives as long as the job

report = Path(snakemake.input.report)
with report.open() as stream:
    rows = list(csv.DictReader(stream, delimiter="\t"))

with open(snakemake.output[0], "w") as out:
    out.write("file_name\toutcome\tsha256_matches\n")
    for row in rows:
        path = report.parent / row["file_name"]
        matches = ""
        if row["outcome"] == "downloaded":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            matches = str(digest == row["sha256"]).lower()
        out.write(f"{row['file_name']}\t{row['outcome']}\t{matches}\n")
        print(f"{row['file_name']}: {row['outcome']} {matches}", file=sys.stderr)
