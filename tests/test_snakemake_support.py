"""The Snakemake internals ghga_tasks.snakemake_support reads, checked on real Snakemake.

If a Snakemake release renames or changes one of them, this fails and says which; the
workflow would otherwise lose its run lock, its stop on signals or its download limit
without a word.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.snakemake

PROBE = textwrap.dedent(
    """
    from ghga_tasks import snakemake_support as support

    support.limit_resource(workflow, "downloads", 1)


    def facts(wildcards):
        print(
            "FACTS", "main" if support.is_main_process(workflow) else "job-process",
            "dry" if support.is_dry_run(workflow) else "real",
            "threads" if support.jobs_are_threads(workflow) else "processes",
            # 9.27 keeps a Resource object, older ones the number: either names 1, not 5.
            "downloads=" + str(workflow.global_resources["downloads"]).replace(
                'Resource("downloads", 1)', "1"
            ),
            flush=True,
        )
        return []


    rule all:
        input: "done.txt"


    rule job:
        input: facts
        output: "done.txt"
        run:
            facts(None)
            open(output[0], "w").write("done")
    """
)


def facts(tmp_path: Path, *args: str) -> list[str]:
    (tmp_path / "Snakefile").write_text(PROBE)
    (tmp_path / "done.txt").unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "downloads=5", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return [line for line in run.stdout.splitlines() if line.startswith("FACTS")]


def test_what_the_workflow_reads_from_snakemake_in_each_mode(tmp_path: Path) -> None:
    # Jobs as threads: everything happens in Snakemake's own process.
    assert facts(tmp_path, "--force-use-threads") == [
        "FACTS main real threads downloads=1",  # the DAG: where start_of_run acts
        "FACTS main real threads downloads=1",  # the job, a thread of the same process
    ]
    # Without threads a run: job is a Snakemake process of its own, which must not act.
    assert facts(tmp_path)[-1] == "FACTS job-process real threads downloads=1"
    assert facts(tmp_path)[0] == "FACTS main real processes downloads=1"
    # A dry run only looks.
    assert facts(tmp_path, "-n") == ["FACTS main dry processes downloads=1"]
