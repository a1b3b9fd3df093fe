"""The benchmark script still runs: ``python -m benchmarks --smoke`` with tiny sizes.

It runs every scenario against nginx on loopback and must write its table and plot with a
row per scenario; the figures themselves are never asserted (benchmarks print them).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ghga_tasks.sandbox import Sandbox, SandboxFile

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {"S1", "S2", "S3b", "S3", "S4", "S5", "S6", "S7", "D1", "R1", "S8"}
# The plan alone; decryption alone; resuming with ghga-tasks download --resume.
WITHOUT_SNAKEMAKE = {"S5", "D1", "R1"}
# What the benchmark runs besides Python (.ci/run installs them with apt).
TOOLS = {"nginx": "/usr/sbin/nginx", "curl": "", "aria2c": "", "GNU time": "/usr/bin/time"}


def missing_tools() -> list[str]:
    return [
        name
        for name, path in TOOLS.items()
        if not (shutil.which(name) or (path and Path(path).exists()))
    ]


@pytest.fixture
def benchmark_tools() -> None:
    """Skip locally without the tools; in CI (CI=true) their absence is a failure."""
    missing = missing_tools()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib (pip install -e '.[bench]')")
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"benchmark prerequisites missing: {', '.join(missing)}")
    assert not missing, f"CI must provide {missing} (see the benchmarks section of .ci/run)"


@pytest.mark.slow
@pytest.mark.snakemake
def test_smoke_benchmark_writes_table_and_plot_with_every_scenario(
    tmp_path: Path, benchmark_tools: None
) -> None:
    out, work = tmp_path / "results", tmp_path / "work"
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)]
    result = subprocess.run(
        [*command, "--workdir", str(work)], cwd=REPO, capture_output=True, text=True, timeout=420
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (out / "results.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert {row["scenario"] for row in rows} == SCENARIOS
    # The shipped workflow ran, and downloaded every byte, in each scenario it is part of.
    shipped = [row for row in rows if row["competitor"] == "snakemake --cores 1"]
    assert {row["scenario"] for row in shipped} == SCENARIOS - WITHOUT_SNAKEMAKE
    assert all(row["median"] and not row["note"].startswith("failed") for row in shipped), shipped
    durable = [row for row in rows if row["competitor"] == "curl + fsync"]
    assert [row["scenario"] for row in durable] == ["S1"] and durable[0]["median"]
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in SCENARIOS)
    assert not (work / "runs").exists()  # the downloads were cleaned up


def test_drs_objects_point_at_the_external_object_base_url(tmp_path: Path, user_keys) -> None:
    """The sandbox hook the benchmark's nginx relies on."""
    base = "http://127.0.0.1:9/r0"
    files = [SandboxFile("GHGAF1", ".bam", 1000)]
    sandbox = Sandbox(
        files=files,
        user_public_key=user_keys.public_key,
        workdir=tmp_path,
        object_base_url=base,
        env_clients=True,  # a DRS request without a work order token, as env mode sends
    )
    with sandbox, requests.Session() as http:
        http.trust_env = False
        drs = http.get(f"{sandbox.dcs_url}/objects/GHGAF1", timeout=5).json()
        presigned = sandbox.presigned_url("GHGAF1")
    assert drs["access_methods"][0]["access_url"]["url"].startswith(f"{base}/s3/outbox/")
    assert presigned.startswith(f"{base}/s3/outbox/")


def test_no_competitor_follows_the_same_one_twice_in_three_rounds() -> None:
    """A run can slow down the next one (S1: the disk after aria2c): the order changes."""
    from benchmarks.harness import _order

    competitors = ["curl + fsync", "curl", "aria2c", "cli", "snakemake", "official"]
    orders = [_order(competitors, round_number) for round_number in range(3)]
    assert all(sorted(order) == sorted(competitors) for order in orders)
    for name in competitors:
        before = [order[order.index(name) - 1] for order in orders if order.index(name) > 0]
        assert len(before) == len(set(before)), (name, orders)


def test_the_wan_proxy_caps_each_connection_and_passes_every_byte() -> None:
    """S7's link: answers at most at the cap (after one burst), requests a round trip late.
    Only lower bounds: a slow machine can make it slower, never faster."""
    import socket
    import threading
    import time

    from benchmarks.wan import BURST, DelayingProxy

    answer = bytes(range(256)) * 1024  # 256 KiB
    rate, delay = 512 * 1024, 0.05
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(16)
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    with server, DelayingProxy(server.getsockname()[1], delay, rate) as proxy:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            client.sendall(b"GET\n")
            received = bytearray()
            while chunk := client.recv(65536):
                received += chunk
        elapsed = time.monotonic() - started
    assert bytes(received) == answer
    assert elapsed >= 2 * delay + (len(answer) - BURST) / rate  # handshake, request, cap
