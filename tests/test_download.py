"""Downloading against the real sandbox on loopback, decrypting with real Crypt4GH."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import package_of
from crypt4gh import lib

from ghga_tasks.core import batch, transfer
from ghga_tasks.core import download as download_module
from ghga_tasks.core.batch import download_api
from ghga_tasks.core.download import (
    PartFile,
    Target,
    download_file,
    finalize_part,
    write_part,
)
from ghga_tasks.core.errors import (
    EnvelopeRejected,
    OutputExists,
    PublicKeyMismatch,
    StagingTimeout,
    TransferError,
)
from ghga_tasks.core.plan import Status, plan_downloads
from ghga_tasks.core.transfer import UrlSource
from ghga_tasks.sandbox import SandboxFile
from ghga_tasks.sandbox.faults import Faults
from ghga_tasks.sandbox.files import generate_secret_key, public_key_of

MIXED = [
    SandboxFile("GHGAF1", ".bam", size=300_000),
    SandboxFile("GHGAF2", ".fastq.gz", size=65_536 * 3 + 7),
    SandboxFile("GHGAF3", "", size=1_000),
]


def decrypt(path: Path, secret_key: bytes) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as infile:
        lib.decrypt([(0, secret_key, None)], infile, out)
    return out.getvalue()


def object_requests(sandbox) -> list:
    return [r for r in sandbox.requests.snapshot() if "/s3/" in r.path]


def test_downloaded_files_decrypt_to_the_archive_plaintext(
    sandbox_factory, user_keys, fast_settings
) -> None:
    sandbox = sandbox_factory(MIXED)
    package = package_of(sandbox)
    api = download_api(package, fast_settings)
    for spec, sandbox_file in zip(package.files, MIXED, strict=True):
        result = download_file(spec, package, fast_settings, api)
        path = fast_settings.output_dir / spec.file_name
        plaintext = decrypt(path, user_keys.secret_key)
        assert plaintext == sandbox.plaintext_path(spec.file_id).read_bytes()
        assert hashlib.sha256(plaintext).hexdigest() == sandbox.checksum(spec.file_id)
        assert result.content_sha256 == sandbox.checksum(spec.file_id)
        assert result.bytes == path.stat().st_size == 124 + sandbox.encrypted_size(spec.file_id)
        assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert sandbox_file.size == len(plaintext)
    names = sorted(p.name for p in fast_settings.output_dir.iterdir())
    assert names == ["GHGAF1.bam.c4gh", "GHGAF2.fastq.gz.c4gh", "GHGAF3.c4gh"]


def test_part_file_exists_while_writing_and_is_renamed_after(
    sandbox_factory, fast_settings, monkeypatch
) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    package = package_of(sandbox)
    target = Target.for_file(package.files[0], fast_settings.output_dir)
    seen: list[tuple[bool, bool]] = []
    real_pwrite = os.pwrite

    def watching_pwrite(fd: int, data: bytes, offset: int) -> int:
        seen.append((target.part.exists(), target.final.exists()))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(transfer.os, "pwrite", watching_pwrite)
    download_file(package.files[0], package, fast_settings, download_api(package, fast_settings))
    assert seen and all(part and not final for part, final in seen)
    assert target.final.exists() and not target.part.exists()


@pytest.mark.parametrize(
    "faults",
    [
        Faults(drop_after_bytes=10_000),  # the server drops every connection mid-body
        Faults(short_body=True),  # every body ends early despite its Content-Length
        Faults(fail_status=500, fail_times=1_000),  # 500s past every retry budget
    ],
    ids=["dropped", "short-body", "500s"],
)
def test_failed_download_leaves_neither_part_nor_final_file(
    sandbox_factory, fast_settings, faults
) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    sandbox.set_faults("GHGAF1", faults)
    package = package_of(sandbox)
    with pytest.raises(TransferError) as raised:
        download_file(
            package.files[0], package, fast_settings, download_api(package, fast_settings)
        )
    assert raised.value.exit_code == 1
    assert list(fast_settings.output_dir.iterdir()) == []


def test_a_range_that_breaks_once_is_resumed(sandbox_factory, user_keys, fast_settings) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    sandbox.set_faults("GHGAF1", Faults(drop_after_bytes=10_000, drop_times=2))
    package = package_of(sandbox)
    download_file(package.files[0], package, fast_settings, download_api(package, fast_settings))
    plaintext = decrypt(fast_settings.output_dir / "GHGAF1.bam.c4gh", user_keys.secret_key)
    assert plaintext == sandbox.plaintext_path("GHGAF1").read_bytes()


def test_existing_part_file_is_replaced(sandbox_factory, user_keys, fast_settings) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    package = package_of(sandbox)
    target = Target.for_file(package.files[0], fast_settings.output_dir)
    target.part.parent.mkdir(parents=True)
    target.part.write_bytes(b"stale bytes from a killed run" * 100_000)  # longer than the file
    download_file(package.files[0], package, fast_settings, download_api(package, fast_settings))
    assert not target.part.exists()
    assert (
        decrypt(target.final, user_keys.secret_key) == sandbox.plaintext_path("GHGAF1").read_bytes()
    )


def test_existing_final_file_is_never_overwritten_without_overwrite(
    sandbox_factory, fast_settings
) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    package = package_of(sandbox)
    target = Target.for_file(package.files[0], fast_settings.output_dir)
    target.final.parent.mkdir(parents=True)
    target.final.write_bytes(b"the user's file")
    with pytest.raises(OutputExists):
        download_file(
            package.files[0], package, fast_settings, download_api(package, fast_settings)
        )
    assert target.final.read_bytes() == b"the user's file"
    assert object_requests(sandbox) == []


def test_expired_url_is_renewed_once_for_all_connections(
    sandbox_factory, user_keys, fast_settings
) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    package = package_of(sandbox)
    api = download_api(package, fast_settings)
    target = Target.for_file(package.files[0], fast_settings.output_dir)
    expired = sandbox.presigned_url("GHGAF1", ttl=-1)
    urls = UrlSource(expired, renew=lambda: api.probe_object("GHGAF1").url)
    envelope = api.fetch_envelope("GHGAF1")
    size = sandbox.encrypted_size("GHGAF1")
    with PartFile(target) as part:
        write_part(part, envelope, size, urls, fast_settings, file_id="GHGAF1")
        finalize_part(part, expected_size=len(envelope) + size, file_id="GHGAF1")
    assert urls.renewals == 1
    assert 403 in [r.status for r in object_requests(sandbox)]
    assert (
        decrypt(target.final, user_keys.secret_key) == sandbox.plaintext_path("GHGAF1").read_bytes()
    )


def test_file_staged_after_a_while_is_waited_for(sandbox_factory, user_keys, fast_settings) -> None:
    sandbox = sandbox_factory([SandboxFile("GHGAF1", ".bam", size=5_000, stage_seconds=1.5)])
    package = package_of(sandbox)
    result = download_file(
        package.files[0], package, fast_settings, download_api(package, fast_settings)
    )
    assert result.waited_seconds >= 1.0
    probes = [r for r in sandbox.requests.snapshot() if r.path.endswith("/objects/GHGAF1")]
    assert [r.status for r in probes][:1] == [202] and probes[-1].status == 200
    assert decrypt(fast_settings.output_dir / "GHGAF1.bam.c4gh", user_keys.secret_key) == (
        sandbox.plaintext_path("GHGAF1").read_bytes()
    )


def test_file_never_staged_hits_max_wait_time(sandbox_factory, fast_settings) -> None:
    sandbox = sandbox_factory([SandboxFile("GHGAF1", ".bam", stage_seconds=math.inf)])
    package = package_of(sandbox)
    settings = dataclasses.replace(fast_settings, max_wait_time=1.5)
    with pytest.raises(StagingTimeout) as raised:
        download_file(package.files[0], package, settings, download_api(package, settings))
    assert raised.value.exit_code == 4
    assert not settings.output_dir.exists() or list(settings.output_dir.iterdir()) == []


def test_plan_probes_every_file_and_orders_staged_first(sandbox_factory, fast_settings) -> None:
    sandbox = sandbox_factory(
        [
            SandboxFile("SLOW", ".bam", stage_seconds=60),
            SandboxFile("QUICK", ".bam", stage_seconds=5),
            SandboxFile("GONE", ".vcf", available=False),
            SandboxFile("READY", ".cram"),
            SandboxFile("HAVE", ""),
        ]
    )
    # GHGA's Retry-After is its estimate of the staging time (from the size): say so here.
    sandbox.set_faults("SLOW", Faults(staging_retry_after="60"))
    sandbox.set_faults("QUICK", Faults(staging_retry_after="10"))
    fast_settings.output_dir.mkdir()
    (fast_settings.output_dir / "HAVE.c4gh").write_bytes(b"already here")
    package = package_of(sandbox)
    entries = plan_downloads(
        package.files, download_api(package, fast_settings), fast_settings.output_dir
    )
    assert [(e.file_id, e.status) for e in entries] == [
        ("READY", Status.STAGED),
        ("QUICK", Status.STAGING),
        ("SLOW", Status.STAGING),
        ("HAVE", Status.PRESENT),  # the user's own file: nothing vouches for it
        ("GONE", Status.UNAVAILABLE),
    ]
    probed = {
        r.path.rsplit("/", 1)[1] for r in sandbox.requests.snapshot() if "/objects/" in r.path
    }
    assert probed == {"SLOW", "QUICK", "GONE", "READY"}  # every file, staging starts for all


def test_key_mismatch_stops_before_any_request(sandbox_factory, fast_settings, tmp_path) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    other_key = tmp_path / "other.pub"
    other = base64.b64encode(public_key_of(generate_secret_key())).decode()
    other_key.write_text(
        f"-----BEGIN CRYPT4GH PUBLIC KEY-----\n{other}\n-----END CRYPT4GH PUBLIC KEY-----\n"
    )
    settings = dataclasses.replace(fast_settings, user_public_key=other_key)
    before = len(sandbox.requests.snapshot())
    with pytest.raises(PublicKeyMismatch) as raised:
        batch.plan_batch(settings, sandbox.env())
    assert raised.value.exit_code == 6
    assert len(sandbox.requests.snapshot()) == before
    assert not settings.output_dir.exists()


def test_envelope_not_written_with_the_given_ghga_key_is_refused(
    sandbox_factory, fast_settings
) -> None:
    sandbox = sandbox_factory(MIXED[:1])
    impostor = base64.b64encode(public_key_of(generate_secret_key())).decode()
    package = package_of(sandbox, GHGA_PUBLIC_KEY=impostor)  # the envelope's writer is not this
    with pytest.raises(EnvelopeRejected) as raised:
        download_file(
            package.files[0], package, fast_settings, download_api(package, fast_settings)
        )
    assert raised.value.exit_code == 5
    writer = base64.b64encode(sandbox.ghga_public_key).decode()
    assert impostor in str(raised.value) and writer in str(raised.value)  # both keys named
    assert object_requests(sandbox) == []
    assert not fast_settings.output_dir.exists() or list(fast_settings.output_dir.iterdir()) == []


MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from ghga_tasks.core.settings import Settings
    from ghga_tasks.core.batch import download_api
    from ghga_tasks.core.download import download_file
    from ghga_tasks.core.work_package import work_package_from_env
    import json
    env = json.loads(sys.argv[1])
    settings = Settings(output_dir=Path(sys.argv[2]), connections=4, part_size=8 << 20)
    package = work_package_from_env(env)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    download_file(package.files[0], package, settings, download_api(package, settings))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024)
    """
)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_file_size(sandbox_factory, tmp_path) -> None:
    import json

    size = 256 * 1024 * 1024
    sandbox = sandbox_factory([SandboxFile("BIG", ".bam", size=size)])
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, json.dumps(sandbox.env()), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    growth_mib = int(out.stdout.strip())
    # Holding the file would cost >= 256 MiB; four 1 MiB read buffers and HTTP state
    # cost a few MiB. 64 MiB leaves room for allocator noise and still catches buffering.
    assert growth_mib < 64, f"peak RSS grew by {growth_mib} MiB for a 256 MiB file"
    assert (tmp_path / "out" / "BIG.bam.c4gh").stat().st_size == 124 + sandbox.encrypted_size("BIG")


def test_files_of_one_process_reuse_the_object_store_connections(
    sandbox_factory, fast_settings, monkeypatch
) -> None:
    """Keep-alive across files: the second file's ranges run on the first file's sessions
    (one round trip less per file on a WAN); a failed file's sessions are never reused."""
    made: list[object] = []
    real = download_module.make_session

    def counting(**kwargs):  # type: ignore[no-untyped-def]
        made.append(session := real(**kwargs))
        return session

    monkeypatch.setattr(download_module, "make_session", counting)
    settings = dataclasses.replace(fast_settings, connections=2, part_size=16 * 1024 * 1024)
    files = [SandboxFile(f"GHGAF{n}", ".bam", size=30_000) for n in (1, 2, 3)]
    sandbox = sandbox_factory(files)
    package = package_of(sandbox)
    api = download_api(package, settings)
    for spec in package.files[:2]:
        download_file(spec, package, settings, api)
    assert len(made) == 1  # one range per small file, on the same session both times

    sandbox.set_faults("GHGAF3", Faults(fail_status=500, fail_times=1_000))
    with pytest.raises(TransferError):
        download_file(package.files[2], package, settings, api)
    sandbox.set_faults("GHGAF3", Faults())
    download_file(package.files[2], package, settings, api)
    assert len(made) == 2  # the failed file's session was closed, not kept
