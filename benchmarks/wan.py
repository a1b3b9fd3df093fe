"""S7: a WAN-like batch. Loopback has no round trips, so fixed per-request costs hide;
here every API request and every object-store request waits one round trip (40 ms) and
each object-store connection is capped at 25 MiB/s, as on a real network.

This kernel has no ``netem``: a small TCP proxy in user space holds every chunk the client
sends for one round trip before passing it on (a GET is one chunk, so one round trip per
request), and a new connection costs one more (the TCP handshake). Answers flow back
without delay; the object store's proxy lets them through at the cap, per connection (a
token bucket with a 64 KiB burst). The cap is the proxy's, not nginx's ``limit_rate``:
nginx grants every request a one-second burst on top of its rate, so a 256 KiB answer
would never feel the cap, and many short ranges would beat it. One proxy sits in front of
the sandbox's API, one in front of nginx's unlimited port. The sandbox builds the URLs it
hands out from the ``Host`` header, so clients that reach it through the proxy stay
behind it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ghga_tasks.sandbox import SandboxFile

from .competitors import GHGA_TASKS, OFFICIAL, SNAKEMAKE, Batch
from .harness import SANDBOX_ROOTS, Context, Entry, batch_of, expect_files, row_from, run_rounds
from .results import Row

if TYPE_CHECKING:
    from .scenarios import Sizes

log = logging.getLogger("benchmarks")
BUFFER = 1024 * 1024
BURST = 64 * 1024  # bytes a capped connection may send at once (and its read size)
TARGET = 1.15  # x the ideal time


class Throttle:
    """A token bucket: ``take(n)`` returns once ``n`` more bytes fit into ``rate``."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        self.rate, self.burst = rate, burst
        self._level, self._last = float(burst), time.monotonic()

    def take(self, count: int) -> None:
        now = time.monotonic()
        self._level = min(self.burst, self._level + (now - self._last) * self.rate) - count
        self._last = now
        if self._level < 0:
            time.sleep(-self._level / self.rate)


class DelayingProxy:
    """``127.0.0.1:<port>`` forwarding to ``127.0.0.1:<target_port>``, ``delay`` seconds
    of round trip added to every request and every new connection; with ``rate``, each
    connection's answers are capped at that many bytes per second."""

    def __init__(self, target_port: int, delay: float, rate: float | None = None) -> None:
        self.target_port, self.delay, self.rate = target_port, delay, rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = threading.Event()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> DelayingProxy:
        threading.Thread(target=self._accept, name="wan-accept", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        time.sleep(self.delay)  # the handshake's round trip
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        throttle = Throttle(self.rate) if self.rate else None
        threading.Thread(
            target=_relay, args=(server, client), kwargs={"throttle": throttle}, daemon=True
        ).start()
        _relay(client, server, delay=self.delay)


def _relay(
    source: socket.socket,
    sink: socket.socket,
    *,
    delay: float = 0.0,
    throttle: Throttle | None = None,
) -> None:
    """Copy ``source`` to ``sink`` until either end closes, each chunk ``delay`` late, at
    most at the ``throttle``'s rate."""
    buffer = memoryview(bytearray(BURST if throttle else BUFFER))
    with contextlib.suppress(OSError):
        while count := source.recv_into(buffer):
            if delay:
                time.sleep(delay)
            if throttle:
                throttle.take(count)
            sink.sendall(buffer[:count])
    for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
        with contextlib.suppress(OSError):
            sock.shutdown(how)


def wan_files(sizes: Sizes) -> list[SandboxFile]:
    """The big files first, then the small ones; every tenth small file stages."""
    big = [
        SandboxFile(f"GHGAF{700 + n:014d}", ".bam", sizes.wan_big)
        for n in range(sizes.wan_big_count)
    ]
    small = [
        SandboxFile(f"GHGAF{800 + n:014d}", ".fastq.gz", sizes.wan_small,
                    stage_seconds=sizes.stage_seconds if n % 10 == 0 else 0.0)
        for n in range(sizes.wan_small_count)
    ]  # fmt: skip
    return [*big, *small]


def s7_wan(ctx: Context, sizes: Sizes) -> list[Row]:
    files = wan_files(sizes)
    sandbox = ctx.sandbox("wan", files)
    store = urlsplit(ctx.objects.base_url("unlimited", SANDBOX_ROOTS.index("wan")))
    competitors = [GHGA_TASKS, SNAKEMAKE, OFFICIAL]
    unlimited = sandbox.archive.object_base_url
    link = sizes.wan_rtt, sizes.rate_bytes
    with DelayingProxy(sandbox.port, sizes.wan_rtt) as api, \
            DelayingProxy(int(store.port or 80), *link) as objects:  # fmt: skip
        sandbox.archive.object_base_url = objects.url(store.path)
        try:
            batch = _behind(batch_of(sandbox, files, connections=5), sandbox.base_url, api.url())
            expected = {c.name: expect_files(sandbox, files, envelope=True) for c in competitors}
            entries = [Entry(c, batch, expected[c.name]) for c in competitors]
            outcome = run_rounds(ctx, "S7", entries, before_each=sandbox.archive.reset_staging,
                                 rounds=min(sizes.rounds, sizes.staging_rounds))  # fmt: skip
        finally:
            sandbox.archive.object_base_url = unlimited
    ideal = _ideal(files, sizes, connections=5)
    rows = []
    for competitor in competitors:
        row = row_from("S7", competitor.name, outcome[competitor.name], "time", "s",
                       lambda run: run.seconds)  # fmt: skip
        if row.median is not None:
            row.ratio, row.baseline = row.median / ideal, f"ideal {ideal:.2f} s"
        if competitor is not OFFICIAL:
            row.target = f"≤ {TARGET} x ideal"
            row.met = row.ratio <= TARGET if row.ratio is not None else None
        rows.append(row)
    ctx.drop_sandbox("wan")
    return rows


def _ideal(files: list[SandboxFile], sizes: Sizes, *, connections: int) -> float:
    """Every byte at the full rate of all connections, plus one round trip per file."""
    total = sum(spec.size for spec in files)
    return total / (connections * sizes.rate_bytes) + len(files) * sizes.wan_rtt


def _behind(batch: Batch, direct: str, proxied: str) -> Batch:
    """The batch with every API URL pointing at the proxy instead of the sandbox."""
    env = {key: value.replace(direct, proxied) for key, value in batch.env.items()}
    return replace(batch, env=env)
