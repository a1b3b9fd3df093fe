"""nginx on loopback serving the sandbox's encrypted objects, as S3 would.

The sandbox writes each object to ``<workdir>/outbox/<uuid>`` and, given an
``object_base_url``, hands out presigned URLs ``<base>/s3/outbox/<uuid>?expires=…``.
nginx serves that path from disk with ``sendfile`` and ignores the query string, so the
Python object store never limits the measurement. One nginx, one port per rate limit:
``limit_rate`` is per connection, which is how object storage throttles too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

OUTBOX_LOCATION = "/s3/outbox/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ObjectServer:
    """One nginx process with a port per named rate limit (``None``: unlimited)."""

    def __init__(self, workdir: Path, roots: list[Path], limits: dict[str, str | None]) -> None:
        self.workdir = workdir
        self.roots = roots  # sandbox work directories; their outbox/ folders are served
        self.ports = {name: free_port() for name in limits}
        self.limits = limits
        self._process: subprocess.Popen[bytes] | None = None

    def base_url(self, limit: str, root: int = 0) -> str:
        """The object base URL for a sandbox (by index in ``roots``) at a rate limit."""
        return f"http://127.0.0.1:{self.ports[limit]}/r{root}"

    def start(self) -> Self:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "nginx.conf"
        config.write_text(self._config())
        self._process = subprocess.Popen(
            [nginx, "-c", str(config), "-p", str(self.workdir), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "nginx-stderr.log").open("wb"),
        )
        for port in self.ports.values():
            _wait_for_port(port, self._process)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _config(self) -> str:
        # As root, nginx workers would switch to "nobody", who cannot read our temp dirs.
        user = "user root root;" if os.geteuid() == 0 else ""
        temp = " ".join(
            f"{kind}_temp_path {self.workdir}/tmp-{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        servers = "\n".join(self._server(name, limit) for name, limit in self.limits.items())
        return f"""{user}
worker_processes 1;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    {temp}
{servers}
}}
"""

    def _server(self, name: str, limit: str | None) -> str:
        locations = "\n".join(
            f"        location /r{index}{OUTBOX_LOCATION} {{ alias {root.resolve()}/outbox/; }}"
            for index, root in enumerate(self.roots)
        )
        rate = f"limit_rate {limit};" if limit else ""
        port = self.ports[name]
        return (
            f"    server {{\n        listen 127.0.0.1:{port};\n        {rate}\n{locations}\n    }}"
        )


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}; see nginx-stderr.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on port {port} within {timeout} s")
