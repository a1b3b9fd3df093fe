"""The pieces of resume_partial on their own: which ranges a resumed download fetches,
the order of sync and record, and what a sidecar must match. Real files throughout; the
end-to-end scenarios (real processes and signals) are in test_faults_resume.py."""

from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from ghga_tasks.core import resume
from ghga_tasks.core.resume import (
    DurableRanges,
    PartIdentity,
    UnusableSidecar,
    kept_bytes,
    merge,
    open_durable,
    reusable_ranges,
    sidecar_path,
    write_sidecar,
)
from ghga_tasks.core.transfer import ByteRange, Prefix, ranges_around, split_ranges

MIB = 1024 * 1024
IDENTITY = PartIdentity("GHGAF1", 10 * MIB, "ab" * 32, "cmVhZGVy", "d3JpdGVy", 124)


@pytest.mark.parametrize(
    ("recorded", "part_size"),
    [
        ([], 2 * MIB),  # nothing recorded: split_ranges' ranges, none done
        ([ByteRange(0, 4 * MIB)], 2 * MIB),  # a prefix: the rest in part_size pieces
        ([ByteRange(MIB, 3 * MIB), ByteRange(5 * MIB, 10 * MIB)], MIB),  # gaps between
        ([ByteRange(0, 10 * MIB)], MIB),  # everything: nothing to fetch
        ([ByteRange(123, 4567)], 3 * MIB),  # odd offsets, smaller than any range
    ],
)
def test_ranges_around_recorded_ones_cover_the_object_and_fetch_only_the_gaps(
    recorded, part_size
) -> None:
    size = 10 * MIB
    ranges, done = ranges_around(size, recorded, connections=4, part_size=part_size)
    assert ranges[0].start == 0 and ranges[-1].stop == size
    assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
    assert [r for r, d in zip(ranges, done, strict=True) if d] == recorded
    assert all(len(r) <= part_size for r, d in zip(ranges, done, strict=True) if not d)
    if not recorded:
        assert ranges == split_ranges(size, connections=4, part_size=part_size)


def test_merge_sorts_and_joins_overlapping_and_adjoining_ranges() -> None:
    ranges = [ByteRange(50, 60), ByteRange(0, 10), ByteRange(10, 20), ByteRange(15, 30)]
    assert merge([*ranges, ByteRange(40, 40)]) == [ByteRange(0, 30), ByteRange(50, 60)]


def test_prefix_starts_with_recorded_ranges_on_disk() -> None:
    """The follower reads reused bytes from disk: the prefix counts them from the start."""
    ranges = [ByteRange(0, 10), ByteRange(10, 20), ByteRange(20, 30)]
    prefix = Prefix(ranges, threading.Event(), [True, False, True])
    assert prefix.value == 10
    prefix.add(1, 10)
    assert prefix.value == 30


def test_every_recorded_byte_was_written_before_the_sync_that_precedes_the_record(
    tmp_path, monkeypatch
) -> None:
    """The promise a SIGKILL or power cut relies on: write, fdatasync, then record."""
    events: list[tuple[str, object]] = []
    real_sync, real_write = os.fdatasync, resume.write_sidecar
    monkeypatch.setattr(resume.os, "fdatasync", lambda fd: (events.append(("sync", None)),
                                                            real_sync(fd)))  # fmt: skip
    monkeypatch.setattr(resume, "write_sidecar", lambda path, identity, ranges: (
        events.append(("record", list(ranges))), real_write(path, identity, ranges)))  # fmt: skip
    monkeypatch.setattr(resume, "SYNC_BYTES", 3000)
    part = tmp_path / "F.c4gh.part"
    fd = os.open(part, os.O_RDWR | os.O_CREAT)
    ranges = split_ranges(10_000, connections=2, part_size=2500)
    prefix = Prefix(ranges, threading.Event())
    durable = DurableRanges(fd, sidecar_path(part), IDENTITY, [])
    durable.attach(prefix)
    for index, byte_range in enumerate(ranges):  # in 1000-byte chunks, as a connection does
        for start in range(byte_range.start, byte_range.stop, 1000):
            stop = min(start + 1000, byte_range.stop)
            os.pwrite(fd, b"x" * (stop - start), 124 + start)
            events.append(("write", ByteRange(start, stop)))
            prefix.add(index, stop - start)
            durable.written(stop - start)
    os.close(fd)
    records = [i for i, (kind, _) in enumerate(events) if kind == "record"]
    assert len(records) >= 3  # batched: several records, not one per chunk
    for position in records:
        last_sync = max(i for i in range(position) if events[i][0] == "sync")
        synced = merge([e for kind, e in events[:last_sync] if kind == "write"])  # type: ignore[misc]
        recorded = events[position][1]
        assert all(any(s.start <= r.start and r.stop <= s.stop for s in synced) for r in recorded)  # type: ignore[union-attr]


def _part_with_sidecar(tmp_path: Path, size_on_disk: int) -> tuple[Path, int]:
    part = tmp_path / "F.c4gh.part"
    part.write_bytes(b"x" * size_on_disk)
    write_sidecar(sidecar_path(part), IDENTITY, [ByteRange(0, MIB)])
    return part, os.open(part, os.O_RDWR)


def test_a_matching_sidecar_keeps_its_ranges(tmp_path) -> None:
    part, fd = _part_with_sidecar(tmp_path, 124 + MIB)
    durable = open_durable(fd, part, IDENTITY)
    assert durable.reused == MIB and os.fstat(fd).st_size == 124 + MIB
    os.close(fd)


@pytest.mark.parametrize(
    ("identity", "why"),
    [
        (replace(IDENTITY, file_id="GHGAF2"), "file_id"),
        (replace(IDENTITY, object_size=11 * MIB), "object_size"),
        (replace(IDENTITY, content_sha256="cd" * 32), "content_sha256"),
        (replace(IDENTITY, reader_key="b3RoZXI="), "reader_key"),  # the user's key changed
        (replace(IDENTITY, writer_key="bmV3"), "writer_key"),  # another envelope writer
    ],
)
def test_a_sidecar_for_another_object_is_refused_naming_what_differs(
    identity, why, tmp_path
) -> None:
    part, fd = _part_with_sidecar(tmp_path, 124 + MIB)
    with pytest.raises(UnusableSidecar, match=why):
        reusable_ranges(sidecar_path(part), identity, 124 + MIB)
    durable = open_durable(fd, part, identity)  # the download then starts over
    assert durable.reused == 0 and os.fstat(fd).st_size == 0
    assert not sidecar_path(part).exists()
    os.close(fd)


def test_a_part_without_a_sidecar_is_emptied_even_with_resume(tmp_path) -> None:
    part = tmp_path / "F.c4gh.part"
    part.write_bytes(b"left by a run without resume_partial")
    fd = os.open(part, os.O_RDWR)
    assert open_durable(fd, part, IDENTITY).reused == 0
    assert os.fstat(fd).st_size == 0
    os.close(fd)


def _sidecar_with(ranges: str) -> bytes:
    fields = json.dumps({"version": 1, **asdict(IDENTITY)})
    return f'{fields[:-1]}, "ranges": {ranges}}}'.encode()


@pytest.mark.parametrize(
    "content",
    [
        b"",  # empty: written by a tool that crashed
        b"{",  # cut short
        b"[1, 2]",  # JSON, not an object
        b'{"version": 1}',  # fields missing
        json.dumps({"version": 99}).encode(),  # a future format
        _sidecar_with("[[5, 2]]"),  # a reversed range
        _sidecar_with("[[-4, 2]]"),  # before the object
        _sidecar_with("[[0, Infinity]]"),  # not a number a range can hold
        _sidecar_with('"all"'),  # not a list of pairs
        b"[" * 100_000,  # nesting deeper than the parser goes
    ],
)
def test_an_unreadable_sidecar_keeps_nothing_and_never_raises(content, tmp_path) -> None:
    part = tmp_path / "F.c4gh.part"
    part.write_bytes(b"x" * 200)
    sidecar_path(part).write_bytes(content)
    assert kept_bytes(part) == 0
    with pytest.raises(UnusableSidecar):
        reusable_ranges(sidecar_path(part), IDENTITY, 200)
