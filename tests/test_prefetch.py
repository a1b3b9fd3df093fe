"""Metadata pipelining (core/prefetch.py): answers fetched ahead are used once, only
while fresh and only for staged files; anything else goes to the API live."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from ghga_tasks.core import batch
from ghga_tasks.core.api import Staged, Staging
from ghga_tasks.core.prefetch import Ahead
from ghga_tasks.sandbox import SandboxFile

DRS = "/ga4gh/drs/v1/objects"
STAGED = Staged(size=10, url="https://objects/F1", sha256="s")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ahead(answers: dict[str, object], clock: Clock | None = None) -> tuple[Ahead, list[str]]:
    fetched: list[str] = []

    def fetch(file_id: str):  # type: ignore[no-untyped-def]
        fetched.append(file_id)
        answer = answers[file_id]
        if isinstance(answer, Exception):
            raise answer
        return answer, (b"envelope" if isinstance(answer, Staged) else None)

    usable = lambda probe: isinstance(probe, Staged)  # noqa: E731
    return Ahead(fetch, usable, clock=clock or Clock()), fetched


def test_a_staged_answer_is_handed_out_once_then_the_api_is_asked_live() -> None:
    cache, fetched = ahead({"F1": STAGED})
    cache.request(["F1"])
    cache.request(["F1"])  # already being fetched: not again
    assert cache.probe("F1") == STAGED
    assert cache.probe("F1") is None  # a renewed URL must come from the API
    assert cache.envelope("F1") == b"envelope"
    assert cache.envelope("F1") is None
    assert fetched == ["F1"]


def test_staging_files_errors_and_old_answers_are_not_used() -> None:
    clock = Clock()
    cache, _ = ahead({"F1": Staging(retry_after=5), "F2": RuntimeError("503"), "F3": STAGED}, clock)
    cache.request(["F1", "F2", "F3"])
    assert cache.probe("F1") is None  # staging: its turn asks again
    assert cache.probe("F2") is None and cache.envelope("F2") is None
    clock.now = 60.0  # a presigned URL this old may have expired
    assert cache.probe("F3") is None


def test_a_file_asked_for_while_it_is_being_fetched_waits_for_that_answer() -> None:
    release = threading.Event()

    def slow_fetch(_file_id: str) -> tuple[Staged, bytes]:
        release.wait(5)
        return STAGED, b"envelope"

    cache = Ahead(slow_fetch, lambda _probe: True)
    cache.request(["F1"])
    threading.Timer(0.2, release.set).start()
    assert cache.probe("F1") == STAGED  # waited for the answer in flight


@pytest.fixture
def wps_settings(fast_settings):  # type: ignore[no-untyped-def]
    return dataclasses.replace(fast_settings, work_package_source="wps")


def test_files_fetched_ahead_start_without_a_round_trip(sandbox_factory, wps_settings) -> None:
    """Against the sandbox, as GHGA: work order tokens, DRS object and envelope come from
    the fetch ahead; the download's own probe and envelope cost no request."""
    files = [SandboxFile("GHGAF00000000000001", ".bam", size=5_000),
             SandboxFile("GHGAF00000000000002", "", size=5_000)]  # fmt: skip
    sandbox = sandbox_factory(files, env_clients=False)
    opened = batch.open_work_package(wps_settings, sandbox.env())
    second = files[1].file_id
    opened.api.fetch_ahead([second])
    deadline = time.monotonic() + 10
    while not sandbox.requests.matching(path_prefix=f"{DRS}/{second}/envelopes"):
        assert time.monotonic() < deadline, "the envelope was never fetched ahead"
        time.sleep(0.01)
    sandbox.requests.clear()
    assert isinstance(opened.api.probe_object(second), Staged)
    assert len(opened.api.fetch_envelope(second)) == 124
    assert sandbox.requests.snapshot() == []  # no token, no DRS object, no envelope asked
    # A second probe (a renewed URL) goes to the archive.
    assert isinstance(opened.api.probe_object(second), Staged)
    assert sandbox.requests.matching(path_prefix=f"{DRS}/{second}")
