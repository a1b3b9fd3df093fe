"""The sandbox's slow object store (ghga_tasks.sandbox.throttle), used by the SLURM tests
to cancel a job mid-file. No timing is asserted: the pauses are recorded instead."""

from __future__ import annotations

import pytest
import requests

from ghga_tasks.sandbox import Sandbox, SandboxFile, throttle
from ghga_tasks.sandbox.throttle import CHUNK, SlowObjectStoreRouter, slow_downloads

SLOW, FAST = SandboxFile("SLOW1", ".bam", size=100_000), SandboxFile("FAST1", "", size=50_000)


class RecordedPauses:
    """Stands in for the ``time`` module: records each pause instead of sleeping."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> RecordedPauses:
    recorded = RecordedPauses()
    monkeypatch.setattr(throttle, "time", recorded)
    return recorded


def object_via_url(http: requests.Session, sandbox: Sandbox, file_id: str) -> bytes:
    drs = http.get(f"{sandbox.dcs_url}/objects/{file_id}").json()
    response = http.get(drs["access_methods"][0]["access_url"]["url"])
    assert response.status_code == 200
    return response.content


def test_slowed_file_arrives_intact_in_paced_chunks(sandbox_factory, http, pauses):
    sandbox = sandbox_factory([SLOW, FAST])
    with slow_downloads(sandbox.app, bytes_per_second=10_000, file_ids={SLOW.file_id}):
        body = object_via_url(http, sandbox, SLOW.file_id)
    assert body == sandbox.object_path(SLOW.file_id).read_bytes()
    # One pause per chunk, each as long as the chunk takes at 10 kB/s.
    assert len(pauses.pauses) == -(-len(body) // CHUNK)
    assert sum(pauses.pauses) == pytest.approx(len(body) / 10_000)


def test_other_files_and_the_api_are_not_slowed(sandbox_factory, http, pauses):
    sandbox = sandbox_factory([SLOW, FAST])
    with slow_downloads(sandbox.app, bytes_per_second=10_000, file_ids={SLOW.file_id}):
        body = object_via_url(http, sandbox, FAST.file_id)
    assert body == sandbox.object_path(FAST.file_id).read_bytes()
    assert pauses.pauses == []


def test_full_speed_returns_after_the_block(sandbox_factory, http, pauses):
    sandbox = sandbox_factory([SLOW])
    original = sandbox.app.router
    with slow_downloads(sandbox.app, bytes_per_second=10_000) as slowed:
        assert sandbox.app.router is slowed and isinstance(slowed, SlowObjectStoreRouter)
    assert sandbox.app.router is original
    object_via_url(http, sandbox, SLOW.file_id)
    assert pauses.pauses == []


def test_trickle_closes_the_original_body_when_the_client_goes_away():
    class Body:
        closed = False

        def __iter__(self):
            yield b"x" * (3 * CHUNK)

        def close(self) -> None:
            self.closed = True

    body = Body()
    pieces = throttle.trickle(body, bytes_per_second=10**12)
    assert len(next(pieces)) == CHUNK
    pieces.close()  # what the WSGI server does when the client disconnects
    assert body.closed
