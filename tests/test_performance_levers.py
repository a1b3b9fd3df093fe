"""Speed-ups found with the benchmarks (docs/benchmarks.md) must not change behaviour."""

from __future__ import annotations

from pathlib import Path

from ghga_tasks.core.plan import PlanEntry, Status, download_ranks, read_plan, write_plan


def entry(number: int, status: Status = Status.STAGED) -> PlanEntry:
    file_id = f"GHGAF{number:014d}"
    return PlanEntry(file_id, ".bam", f"{file_id}.bam.c4gh", status, 0.0, 1000, "")


def test_a_rewritten_plan_is_read_afresh(tmp_path: Path) -> None:
    # read_plan parses a plan once per version; a new plan (the checkpoint re-ran)
    # must never be answered from the old parse, even within the same clock tick.
    path = tmp_path / "ghga_plan.tsv"
    write_plan([entry(1), entry(2)], path)
    assert [e.file_id for e in read_plan(path)] == ["GHGAF00000000000001", "GHGAF00000000000002"]
    write_plan([entry(3, Status.STAGING)], path)
    assert read_plan(path) == [entry(3, Status.STAGING)]


def test_a_plan_edited_in_place_is_read_afresh(tmp_path: Path) -> None:
    # Same file (inode), different content: a person trimming rows by hand.
    path = tmp_path / "ghga_plan.tsv"
    write_plan([entry(1), entry(2)], path)
    read_plan(path)
    lines = path.read_text().splitlines(keepends=True)
    with path.open("w") as stream:
        stream.writelines(lines[:2])
    assert read_plan(path) == [entry(1)]


def test_changing_a_returned_plan_does_not_change_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "ghga_plan.tsv"
    write_plan([entry(1), entry(2)], path)
    first = read_plan(path)
    first.clear()
    assert len(read_plan(path)) == 2


def test_download_ranks_follow_the_plan_and_a_new_plan(tmp_path: Path) -> None:
    # Snakemake asks once per job; the ranks are built once per plan version.
    path = tmp_path / "ghga_plan.tsv"
    write_plan([entry(1), entry(2), entry(3, Status.UNAVAILABLE)], path)
    assert download_ranks(path) == {"GHGAF00000000000001.bam.c4gh": 2,
                                    "GHGAF00000000000002.bam.c4gh": 1}  # fmt: skip
    write_plan([entry(2), entry(1)], path)
    assert download_ranks(path) == {"GHGAF00000000000002.bam.c4gh": 2,
                                    "GHGAF00000000000001.bam.c4gh": 1}  # fmt: skip
