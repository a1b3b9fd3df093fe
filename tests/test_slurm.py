"""The workflow on a real one-node SLURM cluster, through snakemake-executor-plugin-slurm.

Each test lays out a copy of the repository as a user's checkout and runs the commands of
docs/hpc.md in it, as written (``test_docs_show_exactly_the_commands_the_tests_run``
keeps the two identical). The sandbox listens on 127.0.0.1, which SLURM jobs on this one
node reach like a compute node reaches GHGA.

Where SLURM is not running these tests are skipped with the reason; in CI (``CI=true``)
they fail instead: ``.ci/run`` starts the cluster with ``.ci/start-slurm.sh``.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from crypt4gh import lib

from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.throttle import slow_downloads

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCS = REPO / "docs/hpc.md"

# The commands of docs/hpc.md. The test cluster, like many small ones, has no accounting
# database, hence the two flags (docs/hpc.md explains them).
NO_ACCOUNTING = "--slurm-no-account --slurm-status-command squeue"
LOCAL_DOWNLOADS = "snakemake --workflow-profile profiles/slurm"
LOCAL_DOWNLOADS_NO_ACCOUNTING = f"snakemake --workflow-profile profiles/slurm {NO_ACCOUNTING}"
CLUSTER_DOWNLOADS = f"{LOCAL_DOWNLOADS_NO_ACCOUNTING} --config downloads_on_cluster=true"
CONSUMER = f"snakemake --workflow-profile ../../profiles/slurm {NO_ACCOUNTING}"
DOCUMENTED = {LOCAL_DOWNLOADS, LOCAL_DOWNLOADS_NO_ACCOUNTING, CLUSTER_DOWNLOADS, CONSUMER}

# Test-only: the plugin checks job states 40 s after the first submission and backs off
# from there; 2 s keeps the tests short. Appended after the documented command.
FAST_STATUS_CHECKS = ["--slurm-init-seconds-before-status-checks", "2"]

# What a user would put in config/config.yaml for this sandbox: small ranges, quick retries.
TEST_CONFIG = {"part_size": "65536", "connections": "2", "range_retries": "2", "read_timeout": "5"}


def slurm_unavailable() -> str | None:
    """Why jobs cannot be submitted here, or None when a SLURM node is ready."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "SLURM is not installed; .ci/start-slurm.sh installs and starts one node"
    try:
        sinfo = subprocess.run(
            ["sinfo", "--noheader", "--responding", "--states=idle,mixed", "--format=%N"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s; is slurmctld running? (.ci/start-slurm.sh)"
    if sinfo.returncode != 0 or not sinfo.stdout.strip():
        detail = sinfo.stderr.strip() or "no idle node"
        return f"no SLURM node is ready ({detail}); .ci/start-slurm.sh starts one"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    """Skip where SLURM is not running; in CI that is a failure, never a skip."""
    problem = slurm_unavailable()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the SLURM tests, but: {problem}")
    if problem:
        pytest.skip(problem)


@pytest.fixture
def checkout(tmp_path: Path, user_keys) -> Path:
    """A user's clone: the workflow, config, profiles and examples, the key pair at the
    top and in the consumer example, and config/config.yaml edited for the sandbox."""
    root = tmp_path / "ghga-tasks"
    root.mkdir()
    shutil.copy(REPO / "Snakefile", root)
    for folder in ("workflow", "config", "profiles", "examples"):
        shutil.copytree(REPO / folder, root / folder)
    for place in (root, root / "examples/consumer"):
        shutil.copy(user_keys.public_key_path, place / "key.pub")
        shutil.copy(user_keys.secret_key_path, place / "key.sec")
    config = root / "config/config.yaml"
    text = config.read_text()
    for key, value in TEST_CONFIG.items():
        text, count = re.subn(rf"(?m)^{key}: .*$", f"{key}: {value}", text)
        assert count == 1, key
    config.write_text(text)
    return root


def run_documented(
    command: str, cwd: Path, sandbox: Sandbox, *, background: bool = False
) -> subprocess.Popen[str]:
    """Start a command of docs/hpc.md in ``cwd`` with the sandbox's GHGA_* variables
    (sbatch hands them on to the jobs) and this interpreter's bin/ first on PATH."""
    assert command in DOCUMENTED
    args = shlex.split(command)
    args[0] = str(BIN / "snakemake")
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        [*args, *FAST_STATUS_CHECKS],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 480) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def run_to_end(command: str, cwd: Path, sandbox: Sandbox) -> str:
    code, output = finish(run_documented(command, cwd, sandbox))
    assert code == 0, output[-4000:]
    return output


def cluster_jobs(workdir: Path) -> list[tuple[str, str]]:
    """(comment, state) of every SLURM job that ran in ``workdir``, in submission order.

    The plugin puts the rule (and wildcards) in the job comment. Finished jobs stay
    listed for MinJobAge (600 s on the test cluster), so no accounting is needed.
    """
    listing = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--sort=i", "--format=%i|%k|%T|%Z"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    jobs = []
    for line in listing.stdout.splitlines():
        _, comment, state, directory = line.strip().split("|")
        if Path(directory).resolve() == workdir.resolve():
            jobs.append((comment, state))
    return jobs


def file_name(spec: SandboxFile) -> str:
    extension = f".{spec.extension.lstrip('.')}" if spec.extension else ""
    return f"{spec.file_id}{extension}.c4gh"


def decrypted(path: Path, secret_key: bytes) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as stream:
        lib.decrypt([(0, secret_key, None)], stream, out)
    return out.getvalue()


def report_of(downloads: Path) -> pd.DataFrame:
    return pd.read_csv(downloads / "ghga_report.tsv", sep="\t", dtype=str, keep_default_na=False)


def fetched_objects(sandbox: Sandbox) -> set[str]:
    """Files whose Download API or object-store URLs were requested."""
    return {r.file_id for r in sandbox.requests.snapshot() if r.file_id}


def test_docs_show_exactly_the_commands_the_tests_run():
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    shown = {" ".join(line.split()) for line in lines if line.lstrip().startswith("snakemake ")}
    assert shown == DOCUMENTED


@pytest.mark.slurm
@pytest.mark.snakemake
@pytest.mark.slow
def test_downloads_stay_on_the_submit_host_by_default(slurm, checkout, sandbox_factory):
    """Compute nodes without internet: nothing of the download is submitted to SLURM."""
    profile = checkout / "profiles/slurm/config.yaml"
    # As docs/hpc.md says for a cluster without accounting: uncomment the two lines.
    text, count = re.subn(r"(?m)^# (slurm-[a-z-]+: .*)$", r"\1", profile.read_text())
    assert count == 2, "profiles/slurm lost its two commented no-accounting settings"
    profile.write_text(text)
    batch = [SandboxFile("GHGAF1", ".bam", size=120_000), SandboxFile("GHGAF2", "", size=5_000)]
    sandbox = sandbox_factory(batch)
    output = run_to_end(LOCAL_DOWNLOADS, checkout, sandbox)
    assert cluster_jobs(checkout) == []
    assert "localrule download_file:" in output
    assert set(report_of(checkout / "downloads")["outcome"]) == {"downloaded"}


@pytest.mark.slurm
@pytest.mark.snakemake
@pytest.mark.slow
def test_downloads_on_cluster_run_as_slurm_jobs_one_at_a_time(
    slurm, checkout, sandbox_factory, user_keys
):
    # Two files are enough to see one job per file and no overlap; every SLURM job costs
    # the test about 15 s (job start, Snakemake inside the job, the next status check).
    batch = [SandboxFile("GHGAF1", ".bam", size=200_000), SandboxFile("GHGAF2", "", size=1_000)]
    sandbox = sandbox_factory(batch)
    run_to_end(CLUSTER_DOWNLOADS, checkout, sandbox)

    downloads = checkout / "downloads"
    for spec in batch:
        plain = decrypted(downloads / file_name(spec), user_keys.secret_key)
        assert plain == sandbox.plaintext_path(spec.file_id).read_bytes()
        assert (downloads / "logs/download" / f"{file_name(spec)}.log").stat().st_size > 0
    assert not list(downloads.glob("*.part"))
    # SLURM ran the plan, one job per file and the report, and all of them completed.
    assert sorted(cluster_jobs(checkout)) == sorted(
        [
            ("rule_plan_downloads", "COMPLETED"),
            *[(f"rule_download_file_wildcards_{file_name(s)}", "COMPLETED") for s in batch],
            ("rule_report", "COMPLETED"),
        ]
    )
    report = report_of(downloads).astype({"started_at": float, "finished_at": float})
    assert set(report["outcome"]) == {"downloaded"}
    spans = sorted(zip(report["started_at"], report["finished_at"], strict=True))
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert end <= next_start, f"two download jobs overlapped: {spans}"


def wait_for_running_job(workdir: Path, comment: str, part: Path) -> str:
    """The SLURM job id of ``comment`` once it runs and has started writing ``part``."""
    for _ in range(1200):  # a bound, not a timing claim: at most ~4 minutes
        listing = subprocess.run(
            ["squeue", "--noheader", "--states=RUNNING", "--format=%i|%k|%Z"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        for line in listing.splitlines():
            job_id, job_comment, directory = line.strip().split("|")
            if job_comment == comment and Path(directory) == workdir and part.exists():
                return job_id
        time.sleep(0.2)
    raise AssertionError(f"{comment} never ran with {part} on disk")


@pytest.mark.slurm
@pytest.mark.snakemake
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cancelled_download_job_leaves_no_part_and_rerun_fetches_only_it(
    slurm, checkout, sandbox_factory, user_keys
):
    small = SandboxFile("GHGAF1", ".bam", size=50_000)
    big = SandboxFile("GHGAF2", ".cram", size=1_000_000)
    sandbox = sandbox_factory([small, big])
    downloads = checkout / "downloads"
    big_name = file_name(big)
    # 1 MB at 2 x 25 kB/s: the job is mid-file for about 20 s, long enough to cancel it.
    with slow_downloads(sandbox.app, bytes_per_second=25_000, file_ids={big.file_id}):
        run = run_documented(CLUSTER_DOWNLOADS, checkout, sandbox)
        try:
            job = wait_for_running_job(
                checkout, f"rule_download_file_wildcards_{big_name}", downloads / f"{big_name}.part"
            )
            subprocess.run(["scancel", job], check=True, timeout=30)
            code, output = finish(run)
        finally:
            run.kill()
    assert code != 0 and "CANCELLED" in output, output[-4000:]
    assert not (downloads / big_name).exists()
    assert not list(downloads.glob("*.part"))
    # The job's own cleanup removed the .part (SIGTERM takes the Ctrl-C path).
    log = (downloads / "logs/download" / f"{big_name}.log").read_text()
    assert "no partial file was kept" in log
    kept = (downloads / file_name(small)).stat().st_mtime_ns

    sandbox.requests.clear()
    run_to_end(CLUSTER_DOWNLOADS, checkout, sandbox)
    assert fetched_objects(sandbox) == {big.file_id}
    assert (downloads / file_name(small)).stat().st_mtime_ns == kept
    plain = decrypted(downloads / big_name, user_keys.secret_key)
    assert plain == sandbox.plaintext_path(big.file_id).read_bytes()
    assert set(report_of(downloads)["outcome"]) == {"downloaded"}


@pytest.mark.slurm
@pytest.mark.snakemake
@pytest.mark.slow
def test_module_consumer_submits_decryption_and_analysis_while_downloads_stay_local(
    slurm, checkout, sandbox_factory
):
    bams = [SandboxFile(f"GHGAF{n}", ".bam", size=80_000 + n, realistic=True) for n in (1, 2, 3)]
    sandbox = sandbox_factory([*bams, SandboxFile("GONE", ".bam", available=False)])
    project = checkout / "examples/consumer"
    run_to_end(CONSUMER, project, sandbox)
    summary = pd.read_csv(project / "results/bam_summary.tsv", sep="\t", dtype=str)
    assert sorted(summary["sample"]) == ["GHGAF1", "GHGAF2", "GHGAF3"]
    for bam in bams:  # decrypted on a compute node, verified, the archive's bytes
        decrypted_bam = project / f"decrypted/{bam.file_id}.bam"
        assert decrypted_bam.read_bytes() == sandbox.plaintext_path(bam.file_id).read_bytes()
    # Decryption (CPU) and the consumer's analysis went to SLURM; ghga_plan_downloads,
    # ghga_download_file and ghga_report ran on the submit host.
    jobs = cluster_jobs(project)
    assert {state for _, state in jobs} == {"COMPLETED"}
    rules = sorted(re.sub(r"_wildcards_.*", "", comment) for comment, _ in jobs)
    assert rules == [
        "rule_bam_header", "rule_bam_header", "rule_bam_header", "rule_bam_summary",
        "rule_ghga_decrypt_file", "rule_ghga_decrypt_file", "rule_ghga_decrypt_file",
    ]  # fmt: skip
