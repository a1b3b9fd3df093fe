"""Per file: read one decrypted BAM's header (BGZF is gzip: the standard library reads it).

A real analysis would run a tool here; this one needs none, and proves the file is a
readable BAM: magic bytes, header text, references.
"""

import gzip
import hashlib
import struct
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's script: directive
sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115 - the log lives as long as the job

bam = Path(snakemake.input.bam)
with gzip.open(bam, "rb") as stream:
    if stream.read(4) != b"BAM\x01":
        sys.exit(f"{bam}: not a BAM file")
    (text_length,) = struct.unpack("<i", stream.read(4))
    header = stream.read(text_length).decode()
    (references,) = struct.unpack("<i", stream.read(4))

header_lines = len(header.splitlines())
sha256 = hashlib.sha256(bam.read_bytes()).hexdigest()
with open(snakemake.output[0], "w") as out:
    out.write("sample\treferences\theader_lines\tsha256\n")
    out.write(f"{snakemake.wildcards.sample}\t{references}\t{header_lines}\t{sha256}\n")
print(f"{bam.name}: BAM, {references} reference(s), {header_lines} header line(s)", file=sys.stderr)
