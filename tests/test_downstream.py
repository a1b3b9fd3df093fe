"""Downstream rules per file (examples/consumer): the module's decrypt_file targets and
ghga_names()/ghga_files() let a consumer run one job per decrypted BAM and one summary,
re-run only what changed, and keep the disk small with keep_encrypted: false. Real
Snakemake against the sandbox on loopback, real Crypt4GH."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from consumer_project import BIN, consumer, environment, run_consumer

from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults

pytestmark = [pytest.mark.snakemake, pytest.mark.slow]

BAMS = [SandboxFile(f"GHGAF{n}", ".bam", size=100_000 + n, realistic=True) for n in (1, 2, 3)]
VCF = SandboxFile("GHGAF4", ".vcf.gz", size=50_000, realistic=True)
GONE = SandboxFile("GONE", ".bam", available=False)
DOWNLOAD_REQUESTS = ("/s3/", "/ga4gh/drs/v1/objects")


def finished(run: subprocess.CompletedProcess[str], rule: str) -> int:
    """How many jobs of ``rule`` Snakemake finished in this run."""
    return len(re.findall(rf"Finished jobid: \d+ \(Rule: {rule}\)", run.stderr))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def downloads_asked(sandbox: Sandbox) -> list[object]:
    return [
        r for prefix in DOWNLOAD_REQUESTS for r in sandbox.requests.matching(path_prefix=prefix)
    ]


def test_one_job_per_decrypted_bam_and_one_summary(sandbox_factory, user_keys, tmp_path) -> None:
    sandbox = sandbox_factory([*BAMS, VCF, GONE])
    project = consumer(tmp_path, user_keys)
    run = run_consumer(project, sandbox)
    assert run.returncode == 0, run.stderr[-3000:]
    assert finished(run, "ghga_download_file") == 4
    assert finished(run, "ghga_decrypt_file") == 3  # only the BAMs: nobody asked for the VCF
    assert finished(run, "bam_header") == 3
    assert finished(run, "bam_summary") == 1
    decrypted = project / "decrypted"
    assert sorted(p.name for p in decrypted.iterdir()) == [f"GHGAF{n}.bam" for n in (1, 2, 3)]
    for bam in BAMS:  # the archive's plaintext, byte for byte, and the summary says so
        assert sha256(decrypted / f"{bam.file_id}.bam") == sha256(
            sandbox.plaintext_path(bam.file_id)
        )
    with (project / "results/bam_summary.tsv").open() as stream:
        rows = {row["sample"]: row for row in csv.DictReader(stream, delimiter="\t")}
    assert sorted(rows) == ["GHGAF1", "GHGAF2", "GHGAF3"]
    assert {row["references"] for row in rows.values()} == {"1"}  # a BAM header was read
    assert (
        "not analysed: GONE.bam.c4gh: skipped_unavailable"
        in (project / "logs/bam_summary.log").read_text()
    )


def test_a_deleted_decrypted_file_is_decrypted_again_without_a_download(
    sandbox_factory, user_keys, tmp_path
) -> None:
    sandbox = sandbox_factory(BAMS)
    project = consumer(tmp_path, user_keys)
    assert run_consumer(project, sandbox).returncode == 0
    (project / "decrypted/GHGAF2.bam").unlink()
    sandbox.requests.clear()

    again = run_consumer(project, sandbox)
    assert again.returncode == 0, again.stderr[-3000:]
    assert finished(again, "ghga_decrypt_file") == 1
    assert "wildcards: name=GHGAF2.bam" in again.stderr
    assert finished(again, "ghga_download_file") == 0 and downloads_asked(sandbox) == []
    assert finished(again, "bam_header") == 1  # only GHGAF2's analysis, and the summary
    assert sha256(project / "decrypted/GHGAF2.bam") == sha256(sandbox.plaintext_path("GHGAF2"))


def test_a_corrupted_download_fails_its_decryption_with_exit_5_and_no_output(
    sandbox_factory, user_keys, tmp_path
) -> None:
    sandbox = sandbox_factory(BAMS)
    project = consumer(tmp_path, user_keys)
    assert run_consumer(project, sandbox).returncode == 0
    encrypted = project / "downloads/GHGAF2.bam.c4gh"
    content = bytearray(encrypted.read_bytes())
    content[len(content) // 2] ^= 0x01  # one flipped bit inside a data segment
    encrypted.write_bytes(bytes(content))
    (project / "decrypted/GHGAF2.bam").unlink()

    again = run_consumer(project, sandbox)
    assert again.returncode != 0
    assert sorted(p.name for p in (project / "decrypted").iterdir()) == ["GHGAF1.bam", "GHGAF3.bam"]
    summary = again.stderr[again.stderr.index("Summary:") :]
    assert re.search(r"GHGAF2\.bam\.c4gh +decryption failed .*integrity check failed", summary)
    record = project / "downloads/.ghga_tasks/failures/decrypt/GHGAF2.bam.c4gh.json"
    assert json.loads(record.read_text())["exit_code"] == 5
    # The same job as a process of its own (what a cluster runs): exit 5, one line.
    step = subprocess.run(
        [str(BIN / "ghga-tasks"), "step", "decrypt", "--settings",
         "downloads/.ghga_tasks/settings.json", "GHGAF2.bam.c4gh"],
        cwd=project, env=environment(sandbox), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert step.returncode == 5, step.stderr
    assert step.stderr.strip().splitlines()[-1].startswith("Error: GHGAF2.bam.c4gh: integrity")
    assert not any((project / "decrypted").glob("*.part"))
    assert not (project / "decrypted/GHGAF2.bam").exists()


def test_keep_encrypted_false_removes_each_c4gh_only_once_its_decryption_verified(
    sandbox_factory, user_keys, tmp_path
) -> None:
    sandbox = sandbox_factory(BAMS)
    # GHGAF3 arrives with one flipped bit (verify is off, so the download succeeds): its
    # decryption must fail, and its .c4gh must stay.
    sandbox.set_faults("GHGAF3", Faults(flip_byte_at=60_000))
    project = consumer(tmp_path, user_keys, keep_encrypted=False)
    run = run_consumer(project, sandbox)
    assert run.returncode != 0  # GHGAF3's decryption failed; keep-going did the rest
    downloads, decrypted = project / "downloads", project / "decrypted"
    assert sorted(p.name for p in downloads.glob("*.c4gh*")) == ["GHGAF3.bam.c4gh"]
    assert sorted(p.name for p in decrypted.iterdir()) == ["GHGAF1.bam", "GHGAF2.bam"]
    for file_id in ("GHGAF1", "GHGAF2"):
        assert sha256(decrypted / f"{file_id}.bam") == sha256(sandbox.plaintext_path(file_id))

    # A changed setting re-plans: the files removed after their decryption count as
    # finished; only the corrupt one (deleted by the user) is fetched again.
    sandbox.set_faults("GHGAF3", Faults())
    (downloads / "GHGAF3.bam.c4gh").unlink()
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["ghga"]["connections"] = 2
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    again = run_consumer(project, sandbox)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ghga_plan_downloads" in again.stderr  # it re-planned
    assert finished(again, "ghga_download_file") == 1
    assert "wildcards: file_name=GHGAF3.bam.c4gh" in again.stderr
    assert not list(downloads.glob("*.c4gh*"))
    assert sha256(decrypted / "GHGAF3.bam") == sha256(sandbox.plaintext_path("GHGAF3"))
    plan = (downloads / "ghga_plan.tsv").read_text()
    assert plan.count("\tdownloaded\t") == 2  # GHGAF1, GHGAF2: finished as decrypted copies
