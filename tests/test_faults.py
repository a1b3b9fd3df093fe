"""The fault suite: what GHGA's services and the network can throw at a batch download.

Each case runs the real ``ghga-tasks step plan`` and ``step download`` commands (what every
Snakemake job runs) against the sandbox with one injected fault, and checks the promise
afterwards: no stray ``.part``, no final file that does not decrypt to the archive's
bytes, no secret in any output, and the exit code and message a user gets. Files the
fault does not touch must still arrive. ``tests/reliability/report.py`` turns the
figures every case records into ``docs/reliability.md``.

Small files (up to 300 kB in 64 KiB ranges) and a 1 s read timeout keep the suite fast.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from reliability.scenario import (
    Batch,
    assert_promise_kept,
    check_promise,
    record,
    suite_settings,
)

from ghga_tasks.sandbox import Sandbox, SandboxFile
from ghga_tasks.sandbox.faults import Faults, parse_fault_spec, retry_after_header

TARGET = "GHGAF2"
BATCH = (
    SandboxFile("GHGAF1", ".bam", size=300_000),
    SandboxFile(TARGET, ".fastq.gz", size=200_000),  # the file the faults hit
    SandboxFile("GHGAF3", "", size=50_000),
)


@dataclass(frozen=True)
class Case:
    """One scenario: a fault, where it hits, and what the user must get."""

    id: str
    area: str
    scenario: str
    faults: Callable[[], Faults]
    exit_code: int
    fired: str  # the fault counter that must have moved: proof the fault happened
    shows: str = ""  # text the user's error line must contain
    everywhere: bool = False  # the faults hit every file, not only TARGET
    after_plan: bool = False  # injected between the plan and the downloads
    stops_batch: bool = False  # the plan itself fails, so no file is downloaded
    skips_target: bool = False  # the run succeeds without TARGET (skipped as unavailable)
    settings: dict[str, Any] = field(default_factory=dict)
    files: tuple[SandboxFile, ...] = BATCH
    check: Callable[[Sandbox, str], bool] = lambda _sandbox, _output: True


def _expired_url_seen(sandbox: Sandbox, _output: str) -> bool:
    return any(r.status == 403 and "/s3/" in r.path for r in sandbox.requests.snapshot())


def _staging(**changes: Any) -> tuple[SandboxFile, ...]:
    return tuple(dataclasses.replace(f, **changes) if f.file_id == TARGET else f for f in BATCH)


OBJECT_STORE = "object store"
API = "Download API"
SIZE = 200_000 + 4 * 28  # TARGET's encrypted size: 4 segments, 28 bytes overhead each

CASES = [
    # --- the object store --------------------------------------------------------------
    Case("reset-resumed", OBJECT_STORE, "connection reset after 20 kB, 4 times",
         lambda: Faults(drop_after_bytes=20_000, drop_times=4), 0, "drop"),
    Case("reset-always", OBJECT_STORE, "connection reset after 20 kB, every time",
         lambda: Faults(drop_after_bytes=20_000), 1, "drop", shows="download failed",
         settings={"range_retries": 1}),
    Case("stall", OBJECT_STORE, "no bytes for 2 s (read timeout 1 s), twice",
         lambda: Faults(stall_after_bytes=10_000, stall_seconds=2.0, stall_times=2), 0, "stall"),
    Case("5xx-burst", OBJECT_STORE, "burst of 500, 502, 503",
         lambda: Faults(fail_status=(500, 502, 503), fail_times=3), 0, "fail_status"),
    Case("503-persisting", OBJECT_STORE, "503 on every request",
         lambda: Faults(fail_status=503, fail_times=10_000), 1, "fail_status",
         shows="download failed", settings={"range_retries": 1}),
    Case("429-seconds", OBJECT_STORE, "429 with Retry-After: 1",
         lambda: Faults(fail_status=429, fail_times=2, retry_after="1"), 0, "fail_status"),
    Case("429-http-date", OBJECT_STORE, "429 with Retry-After as an HTTP date",
         lambda: Faults(fail_status=429, fail_times=2, retry_after="date+1"), 0, "fail_status"),
    Case("429-garbage", OBJECT_STORE, "429 with Retry-After: soon (garbage)",
         lambda: Faults(fail_status=429, fail_times=2, retry_after="soon"), 0, "fail_status"),
    Case("url-expiry", OBJECT_STORE, "presigned URL expires in the middle of the file",
         lambda: Faults(url_ttl=0.6, url_ttl_times=1, delay_seconds=0.25), 0, "url_ttl",
         after_plan=True, check=_expired_url_seen,
         settings={"part_size": 16 * 1024}),  # 16 ranges: four waves of requests
    Case("short-body", OBJECT_STORE, "body ends early (Content-Length promised more), 3 times",
         lambda: Faults(short_body=True, short_times=3), 0, "short_body"),
    Case("short-body-always", OBJECT_STORE, "body ends early on every request",
         lambda: Faults(short_body=True), 1, "short_body", shows="download failed",
         settings={"range_retries": 1}),
    Case("flipped-byte", OBJECT_STORE, "one flipped bit in a range (verify: true)",
         lambda: Faults(flip_byte_at=100_000, flip_times=1), 5, "flip_byte", shows="corrupt",
         settings={"verify": True}),
    Case("range-ignored", OBJECT_STORE, "Range ignored: 200 with the whole object",
         lambda: Faults(ignore_range=True), 0, "ignore_range"),
    Case("slow", OBJECT_STORE, "every response 0.3 s late (read timeout 1 s)",
         lambda: Faults(delay_seconds=0.3), 0, "delay", everywhere=True),
    # --- the Download API ----------------------------------------------------------------
    Case("api-5xx-burst", API, "burst of 500, 502, 503 on the DRS object",
         lambda: Faults(api_fail_status=(500, 502, 503), api_fail_times=3), 0,
         "api_fail_status"),
    Case("api-429", API, "429 with Retry-After: 1 on the DRS object",
         lambda: Faults(api_fail_status=429, api_fail_times=1, retry_after="1"), 0,
         "api_fail_status"),
    # One file whose probe keeps failing is that file's outcome, not the batch's: it is
    # unavailable (the reason in the plan) and the skip policy decides.
    Case("api-500-persisting", API, "500 on every DRS request of one file, from the plan on",
         lambda: Faults(api_fail_status=500, api_fail_times=10_000), 3, "api_fail_status",
         shows="not available for download", settings={"range_retries": 1},
         stops_batch=True),
    Case("api-500-persisting-skipped", API,
         "500 on every DRS request of one file, skip_unavailable: true",
         lambda: Faults(api_fail_status=500, api_fail_times=10_000), 0, "api_fail_status",
         settings={"range_retries": 1, "skip_unavailable": True}, skips_target=True),
    Case("api-500-everywhere", API, "500 on every DRS request of every file",
         lambda: Faults(api_fail_status=500, api_fail_times=10_000), 1, "api_fail_status",
         shows="HTTP 500", settings={"range_retries": 1}, everywhere=True, stops_batch=True),
    Case("staging-stuck", API, "staging never finishes (max_wait_time 2 s)",
         lambda: Faults(staging_stuck=True), 4, "staging_stuck", shows="still being staged",
         settings={"max_wait_time": 2.0}),
    Case("staging-http-date", API, "202 with Retry-After as an HTTP date",
         lambda: Faults(staging_retry_after="date+1"), 0, "staging_retry_after",
         files=_staging(stage_seconds=1.5)),
    Case("staging-garbage", API, "202 with Retry-After: soon (garbage)",
         lambda: Faults(staging_retry_after="soon"), 0, "staging_retry_after",
         files=_staging(stage_seconds=1.5)),
    Case("404-mid-batch", API, "file gone (404) between the plan and its download",
         lambda: Faults(missing_after_probes=0), 1, "missing", shows="not available",
         after_plan=True),
    Case("envelope-500", API, "envelope endpoint answers 500",
         lambda: Faults(envelope_status=500), 1, "envelope_status",
         shows="envelope", settings={"range_retries": 1}),
    Case("malformed-json", API, "DRS object is not JSON (cut in the middle)",
         lambda: Faults(malformed_json=True), 1, "malformed_json", shows="not JSON",
         after_plan=True),
    Case("huge-size", API, "DRS size 1 PB (more than the disk has)",
         lambda: Faults(drs_size=10**15), 1, "drs_size", shows="no space left",
         check=lambda _sandbox, output: "not enough free space" in output),
    Case("absurd-size", API, "DRS size 10^20 (no such file exists)",
         lambda: Faults(drs_size=10**20), 1, "drs_size", shows="invalid size", after_plan=True),
    Case("negative-size", API, "DRS size -1",
         lambda: Faults(drs_size=-1), 1, "drs_size", shows="invalid size", after_plan=True),
    Case("wrong-size", API, "DRS size 1000 bytes short of the object",
         lambda: Faults(drs_size=SIZE - 1000), 1, "drs_size", shows="the Download API said",
         after_plan=True, settings={"range_retries": 1}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault_scenario_keeps_the_promise(
    case: Case, sandbox_factory, user_keys, tmp_path: Path, record_property
) -> None:
    sandbox = sandbox_factory(list(case.files))
    settings = suite_settings(tmp_path, user_keys, **case.settings)
    faults = case.faults()

    def inject() -> None:
        if case.everywhere:
            sandbox.set_global_faults(faults)
        else:
            sandbox.set_faults(TARGET, faults)

    if not case.after_plan:
        inject()
    run = Batch(sandbox, settings).download_planned(between=inject if case.after_plan else _noop)
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario=case.scenario, area=case.area, run=run, promise=promise)

    assert faults.counts[case.fired] > 0, f"the fault never fired: {faults.counts}"
    assert run.exit_code == case.exit_code, run.output[-3000:]
    assert case.shows in run.user_sees, run.user_sees
    assert case.check(sandbox, run.output)
    assert_promise_kept(promise)
    others = [f for f in case.files if f.file_id != TARGET]
    expected_finals = len(case.files) if case.exit_code == 0 else len(others)
    if case.skips_target:
        expected_finals = len(others)
    if case.stops_batch:
        expected_finals = 0
    assert promise.final_files == expected_finals, run.output[-3000:]


def _noop() -> None:
    pass


# --- the fault settings and their command-line form -----------------------------------------


@pytest.mark.parametrize(
    ("spec", "file_id", "settings"),
    [
        # one file, two settings
        ("GHGAF1:drop_after_bytes=100,drop_times=2", "GHGAF1", {"drop_after_bytes": 100,
                                                                "drop_times": 2}),
        # every file; statuses cycle
        ("fail_status=500/502/503,fail_times=6", None, {"fail_status": (500, 502, 503),
                                                        "fail_times": 6}),
        # text settings keep their text; floats and booleans
        ("retry_after=soon,delay_seconds=0.5,ignore_range=true", None,
         {"retry_after": "soon", "delay_seconds": 0.5, "ignore_range": True}),
    ],
)  # fmt: skip
def test_fault_spec_parses_the_command_line_form(spec, file_id, settings) -> None:
    parsed_id, faults = parse_fault_spec(spec)
    assert parsed_id == file_id
    assert {name: getattr(faults, name) for name in settings} == settings


@pytest.mark.parametrize("spec", ["", "nonsense=1", "drop_after_bytes=lots", "GHGAF1:"])
def test_bad_fault_spec_is_refused(spec) -> None:
    with pytest.raises(ValueError):
        parse_fault_spec(spec)


def test_retry_after_date_form_is_an_http_date_in_the_future() -> None:
    from email.utils import parsedate_to_datetime

    when = parsedate_to_datetime(retry_after_header("date+30")).timestamp()
    assert time.time() + 25 < when < time.time() + 35
    assert retry_after_header("7") == "7" and retry_after_header("soon") == "soon"


def test_sandbox_command_injects_faults_from_the_command_line(tmp_path: Path) -> None:
    """``ghga-tasks sandbox --fault``: every object request fails, so a download fails."""
    env_file = tmp_path / "sandbox.env"
    server = subprocess.Popen(
        [sys.executable, "-m", "ghga_tasks", "sandbox", "--dir", str(tmp_path), "--env-file",
         str(env_file), "--env-clients", "--fault", "fail_status=404,fail_times=100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the sandbox never became ready"
            time.sleep(0.1)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        download = subprocess.run(
            [sys.executable, "-c", _DOWNLOAD_FIRST_FILE, str(tmp_path)],
            env={**_clean_env(), **env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert download.returncode != 0
        assert "HTTP 404" in download.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


_DOWNLOAD_FIRST_FILE = """
import sys
from pathlib import Path
from ghga_tasks.core.batch import download_api
from ghga_tasks.core.download import download_file
from ghga_tasks.core.settings import Settings
from ghga_tasks.core.work_package import work_package_from_env
root = Path(sys.argv[1])
settings = Settings(output_dir=root / "out", range_retries=1, read_timeout=2)
package = work_package_from_env()
download_file(package.files[0], package, settings, download_api(package, settings))
"""


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("GHGA_")}
