"""Conformance: GHGA's own client downloads from the sandbox, and so do we.

The official ``ghga-connector`` 4.0.1 from PyPI, in a virtualenv of its own, is pointed
at the sandbox exactly as the GHGA test bed points it at GHGA (``GHGA_CONNECTOR_WKVS_API_URL``,
the download token on stdin, unencrypted key files). It must download a batch that
includes a file still being staged, and its ``decrypt`` must give back the sandbox's
plaintext byte for byte: our evidence that the sandbox speaks GHGA's protocol. The sandbox
runs with its production defaults: the DCS refuses any request without a valid work order
token, asks staging clients to come back after GHGA's estimate (5 s at least), and writes
envelopes with a key the WKVS does not publish. Then our client downloads the same batch
from the same sandbox in ``wps`` mode, and each pair of ``.c4gh`` files decrypts to the
same bytes.

The virtualenv is built once per test session (about a minute); set
``GHGA_CONNECTOR_VENV`` to an existing one to reuse it between sessions. Without network
access the test is skipped locally, but in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crypt4gh import lib

from ghga_tasks.core import batch
from ghga_tasks.sandbox import ENVELOPE_SIZE, Sandbox, SandboxFile
from ghga_tasks.sandbox.archive import RETRY_AFTER_MIN

pytestmark = pytest.mark.slow

CONNECTOR = "ghga-connector==4.0.1"
BATCH = [
    SandboxFile("GHGAF00000000000001", ".bam", size=300_000),
    SandboxFile("GHGAF00000000000002", ".fastq.gz", size=70_000, stage_seconds=2),
    SandboxFile("GHGAF00000000000003", "", size=1_000),
    SandboxFile("GHGAF00000000000004", ".vcf.gz", size=140_000),
]


def unavailable(reason: str) -> None:
    """Skip on a laptop without network; in CI a missing prerequisite is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the official-client conformance test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def connector_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/`` of a virtualenv holding the official client."""
    reuse = os.environ.get("GHGA_CONNECTOR_VENV")
    venv = Path(reuse) if reuse else tmp_path_factory.mktemp("official-client") / "venv"
    if not (venv / "bin" / "ghga-connector").exists():
        _install_connector(venv)
    return venv / "bin"


def _install_connector(venv: Path) -> None:
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", CONNECTOR],
    ]
    for command in steps:
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stderr", "") or ""
            unavailable(f"cannot install {CONNECTOR}: {str(output)[-800:] or error}")


def connector(
    bin_dir: Path, sandbox: Sandbox, cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``ghga-connector`` as the GHGA test bed does, isolated from our environment."""
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(cwd),  # no ~/.ghga_connector.yaml from the machine running the tests
        "LANG": "C.UTF-8",
        "COLUMNS": "120",
        "GHGA_CONNECTOR_WKVS_API_URL": sandbox.wkvs_url,
        "GHGA_CONNECTOR_PART_SIZE": "65536",  # several ranges per file
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return subprocess.run(
        [str(bin_dir / "ghga-connector"), *args],
        input=stdin,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def decrypted(path: Path, secret_key: bytes) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as stream:
        lib.decrypt([(0, secret_key, None)], stream, out)
    return out.getvalue()


def output_name(spec: SandboxFile) -> str:
    return f"{spec.file_id}{spec.extension}.c4gh"


def test_official_client_and_ours_download_the_same_batch(
    connector_bin: Path, sandbox_factory, fast_settings, user_keys, tmp_path: Path
) -> None:
    # The fixture's test conveniences off: this sandbox is as strict as GHGA.
    sandbox = sandbox_factory(BATCH, env_clients=False, retry_after_min=RETRY_AFTER_MIN)
    official = tmp_path / "official"
    (official / "out").mkdir(parents=True)
    keys = [
        f"--my-public-key-path={user_keys.public_key_path}",
        f"--my-private-key-path={user_keys.secret_key_path}",
    ]
    run = connector(
        connector_bin, sandbox, official, "download", "--output-dir=out", *keys,
        stdin=sandbox.download_token + "\n",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    _assert_protocol_was_followed(sandbox)

    run = connector(
        connector_bin, sandbox, official, "decrypt", "--input-dir=out", "--output-dir=plain",
        f"--my-private-key-path={user_keys.secret_key_path}",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for spec in BATCH:
        c4gh = official / "out" / output_name(spec)
        assert c4gh.stat().st_size == ENVELOPE_SIZE + sandbox.encrypted_size(spec.file_id)
        plaintext = (official / "plain" / f"{spec.file_id}{spec.extension}").read_bytes()
        assert plaintext == sandbox.plaintext_path(spec.file_id).read_bytes(), spec.file_id
    assert not list((official / "out").glob("*.part"))

    ours = dataclasses.replace(
        fast_settings, work_package_source="wps", output_dir=tmp_path / "ours"
    )
    env = {**sandbox.env()}
    for entry in batch.plan_batch(ours, env):
        batch.download_one(ours, entry.file_name, env)
    for spec in BATCH:
        theirs_file, ours_file = (
            official / "out" / output_name(spec),
            ours.output_dir / output_name(spec),
        )
        assert decrypted(ours_file, user_keys.secret_key) == decrypted(
            theirs_file, user_keys.secret_key
        )
        # Envelopes differ (fresh nonce per request); the content after them is the same object.
        assert ours_file.read_bytes()[ENVELOPE_SIZE:] == theirs_file.read_bytes()[ENVELOPE_SIZE:]


def _assert_protocol_was_followed(sandbox: Sandbox) -> None:
    """The official client met every part of the sandbox it needed, the way GHGA's does."""
    paths = [record.path for record in sandbox.requests]
    assert "/.well-known/values" in paths
    assert any(p.startswith("/wps/work-packages/") and p.count("/") == 3 for p in paths)
    dcs = sandbox.requests.matching(path_prefix="/ga4gh/drs/v1/objects")
    assert all(record.bearer for record in dcs)  # every call carried a work order token ...
    assert {record.status for record in dcs} <= {200, 202}  # ... which the DCS accepted
    probes = [r for r in dcs if r.file_id == BATCH[1].file_id and "envelopes" not in r.path]
    assert probes[0].status == 202 and probes[-1].status == 200  # the staging file was waited for
    gaps = [later.timestamp - earlier.timestamp for earlier, later in itertools.pairwise(probes)]
    assert min(gaps) > RETRY_AFTER_MIN - 0.5  # ... as long as the DCS's Retry-After said
