"""The sandbox's typed content: valid for its extension, at exactly the size asked for."""

from __future__ import annotations

import gzip
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghga_tasks.sandbox.content import FRAMED_SIZES, content_chunks, content_size


def _content(extension: str, size: int) -> bytes:
    return b"".join(content_chunks(extension, size))


@settings(deadline=None, max_examples=40)
@given(
    extension=st.sampled_from([".fastq.gz", ".vcf.gz", ".bam"]),
    size=st.integers(FRAMED_SIZES.start, 600_000),
)
def test_typed_content_has_the_exact_size_and_is_gzip(extension: str, size: int) -> None:
    data = _content(extension, size)
    assert len(data) == size
    if content_size(size) is not None:  # a few sizes cannot be framed: random bytes then
        assert gzip.decompress(data)


@pytest.mark.parametrize("size", [4_096, 100_000, 1_500_000])
def test_fastq_records_are_complete(size: int) -> None:
    lines = gzip.decompress(_content(".fastq.gz", size)).split(b"\n")
    assert lines[-1] == b"" and (len(lines) - 1) % 4 == 0
    for header, bases, plus, quality in zip(*[iter(lines[:-1])] * 4, strict=True):
        assert header.startswith(b"@") and plus == b"+"
        assert len(bases) == len(quality) > 0 and set(bases) <= set(b"ACGT")


def test_vcf_and_bam_look_like_what_their_names_say(tmp_path) -> None:
    vcf = gzip.decompress(_content(".vcf.gz", 200_000)).decode()
    assert vcf.startswith("##fileformat=VCFv4.2") and "#CHROM\tPOS" in vcf
    assert all(line.count("\t") == 7 for line in vcf.splitlines() if not line.startswith("#"))
    assert gzip.decompress(_content(".bam", 300_000)).startswith(b"BAM\x01")
    (tmp_path / "x.vcf.gz").write_bytes(_content(".vcf.gz", 200_000))
    assert subprocess.run(["gzip", "-t", str(tmp_path / "x.vcf.gz")]).returncode == 0


def test_other_extensions_and_tiny_files_stay_random() -> None:
    assert len(_content(".cram", 10_000)) == 10_000
    assert not _content(".bam", 100).startswith(b"\x1f\x8b")  # too small to frame
