"""Production GHGA's behaviour, end to end: real Snakemake runs and the real CLI against
the sandbox in its production-strict default (work order tokens required, envelopes
written with a central key the well-known values do not list, staging answers of 5-300 s).

Each test is one thing a user of the real archive would notice: which files arrive, under
which names, what the plan and report say, and the exit code.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from crypt4gh import lib

from ghga_tasks.core.work_package import FileSpec
from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults
from ghga_tasks.sandbox.wps import WPS_BASE_PATH

pytestmark = [pytest.mark.snakemake, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DCS_OBJECTS = "/ga4gh/drs/v1/objects"

# Extensions GHGA derives from submitted file names, and one file GHGA refuses.
ODD_EXTENSIONS = [
    SandboxFile("GHGAF00000000000001", ".0 final", size=90_000),  # from "Report v1.0 final"
    SandboxFile("GHGAF00000000000002", ".tar.gz", size=70_000),
    SandboxFile("GHGAF00000000000003", ".ÄÖ", size=40_000),  # non-ASCII letters
    SandboxFile("GHGAF00000000000004", "", size=1_000),  # no extension
    SandboxFile("GHGAF00000000000005", ".bam", size=50_000),  # refused: see the test
]
REFUSED = "GHGAF00000000000005"


def wps_env(sandbox: Sandbox) -> dict[str, str]:
    """Only what a real user has: the download token and where GHGA's values are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GHGA_")}
    return {
        **env,
        "GHGA_WKVS_URL": sandbox.wkvs_url,
        "GHGA_DOWNLOAD_TOKEN": sandbox.download_token,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def snakemake_wps(project: Path, sandbox: Sandbox, *config: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(project), "--configfile", str(REPO / "config/config.yaml"),
        "--cores", "1", "--config", "work_package_source=wps", "part_size=65536",
        "read_timeout=5", "range_retries=2", *config,
    ]  # fmt: skip
    return subprocess.run(
        command, env=wps_env(sandbox), capture_output=True, text=True, timeout=300
    )


def table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def decrypted(path: Path, secret_key: bytes) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as stream:
        lib.decrypt([(0, secret_key, None)], stream, out)
    return out.getvalue()


def test_odd_extensions_and_a_refused_file_in_a_production_style_batch(
    sandbox_factory, project, user_keys
) -> None:
    sandbox = sandbox_factory(ODD_EXTENSIONS, env_clients=False)
    sandbox.work_packages.make_unavailable(REFUSED)  # WPS: "File not available for download"
    run = snakemake_wps(project, sandbox, "skip_unavailable=true")
    assert run.returncode == 0, run.stderr[-3000:]

    downloads = project / "downloads"
    names = {
        spec.file_id: FileSpec(spec.file_id, spec.extension).file_name for spec in ODD_EXTENSIONS
    }
    assert names["GHGAF00000000000001"] == "GHGAF00000000000001.0_final.c4gh"
    assert names["GHGAF00000000000003"] == "GHGAF00000000000003.__.c4gh"
    for spec in ODD_EXTENSIONS[:4]:  # every deliverable file, under its safe name
        plain = decrypted(downloads / names[spec.file_id], user_keys.secret_key)
        assert plain == sandbox.plaintext_path(spec.file_id).read_bytes()
    assert not (downloads / names[REFUSED]).exists()
    assert not list(downloads.glob("*.part"))

    plan = table(downloads / "ghga_plan.tsv").set_index("file_id")
    assert plan.loc["GHGAF00000000000001", "extension"] == ".0 final"  # the archive's own
    assert plan.loc[REFUSED, "status"] == "unavailable"
    assert "File not available for download" in plan.loc[REFUSED, "reason"]

    report = table(downloads / "ghga_report.tsv").set_index("file_id")
    assert len(report) == 5
    assert report.loc[REFUSED, "outcome"] == "skipped_unavailable"
    assert "File not available for download" in report.loc[REFUSED, "error"]
    # The envelopes came from GHGA's central key, which the well-known values don't list:
    # recorded, not refused.
    central = base64.b64encode(sandbox.ghga_public_key).decode()
    hub_keys = {base64.b64encode(key).decode() for key in sandbox.hub_public_keys.values()}
    writers = set(report.loc[report["outcome"] == "downloaded", "envelope_writer_key"])
    assert writers == {central} and central not in hub_keys

    # Never a Download API request without a work order token, so never a 401.
    dcs_requests = sandbox.requests.matching(path_prefix=DCS_OBJECTS)
    assert dcs_requests and all(r.bearer for r in dcs_requests)
    assert {r.status for r in dcs_requests} <= {200, 202}
    assert not sandbox.requests.matching(path_prefix=DCS_OBJECTS, file_id=REFUSED)


def test_a_refused_file_cancels_the_cli_run_unless_skipping_is_allowed(
    sandbox_factory, project
) -> None:
    sandbox = sandbox_factory(ODD_EXTENSIONS[3:], env_clients=False)
    sandbox.work_packages.make_unavailable(REFUSED)
    command = [str(BIN / "ghga-tasks"), "download", "--config", "work_package_source=wps"]
    env = wps_env(sandbox)
    cancelled = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert cancelled.returncode == 3, cancelled.stderr  # no terminal to ask: cancel, say how
    assert "--skip-unavailable" in cancelled.stderr
    assert not list((project / "downloads").glob("*.c4gh"))

    sandbox.requests.clear()
    skipped = subprocess.run(
        [*command, "--skip-unavailable"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert (project / "downloads/GHGAF00000000000004.c4gh").exists()
    assert "File not available for download" in skipped.stdout
    # The downloads reuse the plan's work package (the skip answers changed the settings).
    lookups = [
        r for r in sandbox.requests.matching(path_prefix=WPS_BASE_PATH, method="GET")
        if "/work-packages/" in r.path and not r.path.endswith("/work-order-tokens")
    ]  # fmt: skip
    assert len(lookups) == 1, lookups


def test_ghga_public_key_setting_enforces_the_envelope_writer(sandbox_factory, project) -> None:
    sandbox = sandbox_factory(ODD_EXTENSIONS[3:4], env_clients=False)
    wrong = base64.b64encode(sandbox.hub_public_keys["HD01"]).decode()  # a real GHGA key, but
    run = snakemake_wps(project, sandbox, f"ghga_public_key={wrong}")  # not the writer
    assert run.returncode != 0
    log = (project / "downloads/logs/download/GHGAF00000000000004.c4gh.log").read_text()
    central = base64.b64encode(sandbox.ghga_public_key).decode()
    assert "integrity check failed" in log and wrong in log and central in log
    assert not list((project / "downloads").glob("*.c4gh*"))

    right = snakemake_wps(project, sandbox, f"ghga_public_key={central}")
    assert right.returncode == 0, right.stderr[-3000:]
    assert (project / "downloads/GHGAF00000000000004.c4gh").exists()


MID_BATCH = [
    SandboxFile("GHGAF1", ".bam", size=120_000),
    SandboxFile("GHGAF2", ".bam", size=120_000),
    SandboxFile("GHGAF3", ".bam", size=120_000),
]


def test_a_file_failing_mid_batch_does_not_stop_the_others(
    sandbox_factory, project, user_keys
) -> None:
    # env mode here: the isolation is the workflow's, whatever the source.
    sandbox = sandbox_factory(MID_BATCH)
    sandbox.set_faults("GHGAF2", Faults(fail_status=500, fail_times=10_000))  # never delivers
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--directory", str(project), "--snakefile",
        str(REPO / "Snakefile"), "--configfile", str(REPO / "config/config.yaml"),
        "--cores", "1", "--config", "part_size=65536", "range_retries=1", "read_timeout=5",
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0, run.stderr
    downloads = project / "downloads"
    for file_id in ("GHGAF1", "GHGAF3"):
        plain = decrypted(downloads / f"{file_id}.bam.c4gh", user_keys.secret_key)
        assert plain == sandbox.plaintext_path(file_id).read_bytes()
    assert not (downloads / "GHGAF2.bam.c4gh").exists()
    assert not list(downloads.glob("*.part"))
    report = table(downloads / "ghga_report.tsv").set_index("file_id")
    assert list(report["outcome"]) == ["downloaded", "failed", "downloaded"]
    assert "GHGAF2: download failed" in report.loc["GHGAF2", "error"]
    assert report.loc["GHGAF1", "sha256"] and report.loc["GHGAF3", "sha256"]
    summary = run.stderr[run.stderr.index("Summary:") :]  # snakemake's output ends with it
    assert "GHGAF2.bam.c4gh" in summary and "2 downloaded, 1 failed" in summary

    # The report written after the failure must not make the next run think it is done.
    sandbox.set_faults("GHGAF2", Faults())
    sandbox.requests.clear()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r.file_id for r in sandbox.requests.matching(path_prefix=DCS_OBJECTS)} == {"GHGAF2"}
    assert set(table(downloads / "ghga_report.tsv")["outcome"]) == {"downloaded"}


def test_cli_exit_code_is_the_failures_own_when_they_share_one(sandbox_factory, project) -> None:
    sandbox = sandbox_factory(MID_BATCH)
    sandbox.set_faults("GHGAF2", Faults(flip_byte_at=1000))  # corrupt on the wire
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        [str(BIN / "ghga-tasks"), "download", "--yes", "--config", "verify=true"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 5, run.stderr  # integrity, not a generic 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: GHGAF2: integrity check failed")
    assert (project / "downloads/GHGAF1.bam.c4gh").exists()
    assert (project / "downloads/GHGAF3.bam.c4gh").exists()
    assert not (project / "downloads/GHGAF2.bam.c4gh").exists()


@pytest.mark.parametrize(
    ("suffix", "why"),
    [
        ("/wrong/ga4gh/drs/v1", "a path the server does not have: an HTML-ish 404"),
        ("/.well-known", "another GHGA service: its /health is not the Download API's"),
    ],
)
def test_wrong_download_api_url_is_a_configuration_error(
    sandbox_factory, project, suffix: str, why: str
) -> None:
    sandbox = sandbox_factory(MID_BATCH[:1])
    url = f"{sandbox.base_url}{suffix}"
    env = {
        **os.environ, **sandbox.env(), "GHGA_DOWNLOAD_API_URL": url,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    run = subprocess.run(
        [str(BIN / "ghga-tasks"), "download", "--yes"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, (why, run.stderr)
    assert url in run.stderr and "GHGA_DOWNLOAD_API_URL" in run.stderr
    assert not (project / "downloads/ghga_plan.tsv").exists()


def test_env_mode_against_a_production_style_api_says_to_use_wps(sandbox_factory, project) -> None:
    sandbox = sandbox_factory(MID_BATCH[:1], env_clients=False)  # wants work order tokens
    env = {**os.environ, **sandbox.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        [str(BIN / "ghga-tasks"), "download", "--yes"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    assert "Not authenticated" in run.stderr and "work_package_source: wps" in run.stderr
    assert not list((project / "downloads").glob("*.c4gh"))
