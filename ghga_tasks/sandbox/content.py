"""Plaintext that behaves like the file type its extension names, at an exact size.

The demo's decrypted ``.fastq.gz`` and ``.vcf.gz`` should open with ``zcat`` and pass
``gzip -t``, and its ``.bam`` should be a BAM file: that is what a new user tries first.
Such a file is BGZF, the gzip framing htslib writes for ``.bam`` and ``.vcf.gz`` and any
gzip reader reads: blocks that are gzip members with a ``BC`` extra field, then the
standard empty end-of-file block. The blocks here are *stored* (deflate without
compression), so the file's size is exactly known from its content: the content is made
exactly as long as the size the scenario asks for needs, and checksums and sizes stay
what the scenario says. The content is plausible: FASTQ records, VCF lines, a BAM header.

Other extensions, and files too small or too large (held in memory) to frame, get random
bytes.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator

MAX_STORED = 65_505  # bytes of content per block: the block (content + 31) stays <= 64 KiB
BLOCK_OVERHEAD = 31  # gzip header with the BC field (18), stored-block head (5), trailer (8)
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
FRAMED_SIZES = range(4_096, 64 * 1024 * 1024)  # smaller: too little room; larger: memory
_BASES = bytes.maketrans(bytes(range(256)), b"ACGT" * 64)
_QUALITY = bytes.maketrans(bytes(range(256)), bytes(range(35, 75)) * 6 + bytes(range(35, 51)))


def content_chunks(extension: str, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of plaintext for a file with ``extension``, in chunks."""
    make = _CONTENT.get(extension.lower())
    length = content_size(size) if size in FRAMED_SIZES else None
    if make is None or length is None:
        return random_chunks(size)
    return bgzf_stored(make(length))


def random_chunks(size: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    while size > 0:
        piece = os.urandom(min(size, chunk))
        size -= len(piece)
        yield piece


def content_size(file_size: int) -> int | None:
    """How much content fills a BGZF file of exactly ``file_size`` bytes with stored
    blocks; None for the few sizes no content length gives (a new block costs 31)."""
    payload = file_size - len(EOF_BLOCK)
    blocks = math.ceil(payload / (MAX_STORED + BLOCK_OVERHEAD))
    length = payload - blocks * BLOCK_OVERHEAD
    return length if math.ceil(length / MAX_STORED) == blocks else None


def bgzf_stored(content: bytes) -> Iterator[bytes]:
    """``content`` as BGZF: stored blocks, then the end-of-file block."""
    for start in range(0, len(content), MAX_STORED):
        yield _stored_block(content[start : start + MAX_STORED])
    yield EOF_BLOCK


def _stored_block(data: bytes) -> bytes:
    block_size = len(data) + BLOCK_OVERHEAD
    header = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff" + struct.pack("<H", 6)
    extra = b"BC" + struct.pack("<HH", 2, block_size - 1)
    stored = b"\x01" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF)  # final, stored
    trailer = struct.pack("<II", zlib.crc32(data), len(data))
    return header + extra + stored + data + trailer


# --- content of an exact length ---------------------------------------------------------------


def fastq(length: int) -> bytes:
    """150 bp reads, then one or two shorter ones that end exactly at ``length``."""
    records: list[bytes] = []
    remaining = length
    number = 0
    while remaining >= 400:
        number += 1
        record = _read(f"sandbox_read_{number}", 150)
        records.append(record)
        remaining -= len(record)
    if remaining >= 60:  # leaves 39 or 40 bytes: a last read of 16 bases
        first = _read("p", (remaining - 40) // 2 - 3)
        records.append(first)
        remaining -= len(first)
    # a read named "p" or "pp" is 2k + 7 or 2k + 8 bytes long
    records.append(_read("p" * (1 + (remaining - 7) % 2), (remaining - 7) // 2))
    return b"".join(records)


def _read(name: str, bases: int) -> bytes:
    sequence = os.urandom(bases).translate(_BASES)
    quality = os.urandom(bases).translate(_QUALITY)
    return b"@" + name.encode() + b"\n" + sequence + b"\n+\n" + quality + b"\n"


def vcf(length: int) -> bytes:
    """A VCF header, variant lines, and a last line whose INFO ends exactly at ``length``."""
    lines = [
        b"##fileformat=VCFv4.2\n##source=ghga-tasks-sandbox\n##contig=<ID=chr1>\n"
        b'##INFO=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n'
        b'##INFO=<ID=NOTE,Number=1,Type=String,Description="Filler">\n'
        b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    ]
    remaining = length - len(lines[0])
    position = 0
    while remaining >= 200:
        position += 1 + os.urandom(1)[0]
        pair = os.urandom(2).translate(_BASES).decode()
        ref, alt = pair[0], pair[1]
        line = f"chr1\t{position}\t.\t{ref}\t{alt}\t{30 + position % 50}\tPASS\tDP=30\n".encode()
        lines.append(line)
        remaining -= len(line)
    last = f"chr1\t{position + 1}\t.\tA\tG\t50\tPASS\tDP=30;NOTE=".encode()
    lines.append(last + b"x" * (remaining - len(last) - 1) + b"\n")
    return b"".join(lines)


def bam(length: int) -> bytes:
    """A BAM file with a header for one reference and no alignments; an ``@CO`` comment
    line in the header makes it exactly ``length`` bytes."""
    name = b"chr1\x00"
    fixed = 4 + 4 + 4 + 4 + len(name) + 4  # magic, l_text, n_ref, l_name, name, l_ref
    text = b"@HD\tVN:1.6\tSO:unsorted\n@SQ\tSN:chr1\tLN:248956422\n@PG\tID:ghga-tasks\n@CO\t"
    text += b"x" * (length - fixed - len(text) - 1) + b"\n"
    return (
        b"BAM\x01" + struct.pack("<i", len(text)) + text + struct.pack("<i", 1)
        + struct.pack("<i", len(name)) + name + struct.pack("<i", 248_956_422)
    )  # fmt: skip


_CONTENT: dict[str, Callable[[int], bytes]] = {
    ".fastq.gz": fastq,
    ".fq.gz": fastq,
    ".vcf.gz": vcf,
    ".bam": bam,
}
