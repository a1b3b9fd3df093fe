"""Running the sandbox: the :class:`Sandbox` object for tests and :func:`serve` for the CLI.

Design notes:

- waitress serves the WSGI app from a background thread. We drive its asyncore loop
  ourselves and close connections *from that loop thread*, so stopping is prompt and
  never races a poll in progress (waitress's own ``close()`` leaves idle keep-alive
  connections and the loop running). The wake-up pipe is closed last, after the worker
  threads are done, because a finishing worker writes to it; closing it earlier can
  make that write land on a reused file descriptor.
- The sandbox binds 127.0.0.1 unless a host is passed explicitly: it hands out
  unauthenticated download URLs and must not be reachable from the network by accident.
- :meth:`Sandbox.start` returns only once ``/health`` answers, and :func:`serve` writes
  the env file only after that, so a script waiting for the file can use it at once.
- Strict by default, as production GHGA (``docs/protocol.md``): every Download API call
  needs a valid work order token, ``Retry-After`` is the DCS's estimate clamped to
  [5, 300] s, and envelopes are written with a central key the WKVS does not publish.
  ``env_clients=True`` also serves the project's ``env`` work package source (no token),
  and a smaller ``retry_after_min`` (:data:`FAST_RETRY_AFTER_MIN`) keeps tests quick; both
  only when asked for.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import re
import shutil
import signal
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import waitress
from crypt4gh.keys import c4gh, get_private_key, get_public_key
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from ghga_tasks.core.errors import ConfigurationError
from ghga_tasks.sandbox.app import RequestLog, Router, SandboxApp
from ghga_tasks.sandbox.archive import RETRY_AFTER_MAX, RETRY_AFTER_MIN, STAGING_SPEED, Archive
from ghga_tasks.sandbox.dcs import (
    DCS_BASE_PATH,
    DownloadControllerApi,
    optional_bearer,
    work_order_token_policy,
)
from ghga_tasks.sandbox.faults import Faults, InjectedFault
from ghga_tasks.sandbox.files import (
    KEY_SIZE,
    SandboxFile,
    StoredFile,
    generate_secret_key,
    guard_crypt4gh_key_logs,
    public_key_of,
)
from ghga_tasks.sandbox.outbox import OutboxApi
from ghga_tasks.sandbox.presign import OUTBOX_PATH
from ghga_tasks.sandbox.wkvs import STORAGE_ALIASES, WKVS_BASE_PATH, WellKnownValuesApi
from ghga_tasks.sandbox.wps import (
    MintedWorkPackage,
    WorkOrderSigner,
    WorkPackageApi,
    files_of,
)

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_LOOP_SLICE = 0.5  # seconds one poll may block; stop() wakes it through the trigger
_READY_TIMEOUT = 10.0
FAST_RETRY_AFTER_MIN = 1
"""``retry_after_min`` for quick runs (tests, ``ghga-tasks sandbox --fast-staging``)."""

DEFAULT_FILES: tuple[SandboxFile, ...] = (
    SandboxFile("GHGAF00000000000001", ".bam", 3_000_000, realistic=True),
    SandboxFile("GHGAF00000000000002", ".fastq.gz", 1_500_000, stage_seconds=3, realistic=True),
    SandboxFile("GHGAF00000000000003", ".vcf.gz", 500_000, realistic=True),
    SandboxFile("GHGAF00000000000004", "", 100_000),
)
"""The contract's default batch: mixed extensions (incl. none), one file staging ~3 s; the
.bam, .fastq.gz and .vcf.gz decrypt to files those tools read (``zcat``, ``gzip -t``)."""


def build_app(
    archive: Archive,
    user_public_key: bytes,
    work_packages: WorkPackageApi,
    well_known_values: WellKnownValuesApi | None = None,
    *,
    env_clients: bool = False,
) -> SandboxApp:
    """The WSGI app: WKVS, WPS, a Download Controller that verifies work order tokens,
    and the outbox. With ``env_clients``, the Download Controller also serves requests
    without a JWT-shaped bearer, for ``user_public_key`` (the ``env`` source)."""
    app = SandboxApp(Router(), RequestLog())
    env_policy = optional_bearer(user_public_key) if env_clients else None
    auth = work_order_token_policy(work_packages.signer.verify, env_policy)
    if well_known_values is None:
        well_known_values = WellKnownValuesApi(hub_public_keys(), DCS_BASE_PATH)
    well_known_values.register(app.router)
    work_packages.register(app.router)
    DownloadControllerApi(archive, auth).register(app.router)
    OutboxApi(archive).register(app.router)
    return app


def hub_public_keys(aliases: Sequence[str] = STORAGE_ALIASES) -> dict[str, bytes]:
    """A fresh public key per data hub (storage alias). Their secret halves are dropped:
    they would only decrypt uploads, which the sandbox does not take."""
    return {alias: public_key_of(generate_secret_key()) for alias in aliases}


class Sandbox:
    """A GHGA-compatible Download API and object store on loopback, for tests and demos.

    Files are generated when the sandbox is built; :meth:`start` binds and serves them.
    Also a context manager (``with Sandbox(...) as sandbox:``) that starts and stops.
    A stopped sandbox can start again on the same port with the same files (to test a
    client across a server restart), unless it generated them in its own temporary
    directory, which :meth:`stop` removes.

    Production behaviour by default; ``env_clients=True`` serves the ``env`` work package
    source too, ``retry_after_min=FAST_RETRY_AFTER_MIN`` makes staging answers quicker.
    ``staging_speed`` (MB/s), ``retry_after_min`` and ``retry_after_max`` (s) are the
    DCS's settings for its ``Retry-After`` estimate.
    """

    def __init__(
        self,
        *,
        files: Sequence[SandboxFile] = DEFAULT_FILES,
        user_public_key: bytes,
        workdir: Path | None = None,
        port: int = 0,
        host: str = LOOPBACK,
        url_ttl: float = 30.0,
        staging_speed: int = STAGING_SPEED,
        retry_after_min: int = RETRY_AFTER_MIN,
        retry_after_max: int = RETRY_AFTER_MAX,
        threads: int = 16,
        user_id: str | None = None,
        object_base_url: str | None = None,
        env_clients: bool = False,
    ) -> None:
        if len(user_public_key) != KEY_SIZE:
            raise ValueError("user_public_key must be the 32 raw bytes of an X25519 key")
        guard_crypt4gh_key_logs()
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="ghga-sandbox-")
            workdir = Path(self._tempdir.name)
        self.workdir = workdir
        self._data_removed = False
        self.user_public_key = bytes(user_public_key)
        self.user_id = user_id or str(uuid.uuid4())
        self._host, self._port, self._threads = host, port, threads
        self.archive = Archive(
            files,
            self.workdir,
            url_ttl=url_ttl,
            staging_speed=staging_speed,
            retry_after_min=retry_after_min,
            retry_after_max=retry_after_max,
            object_base_url=object_base_url,
        )
        # The WKVS and WPS: one work package for all files, minted up front.
        self.work_packages = WorkPackageApi(WorkOrderSigner())
        self.hub_public_keys = hub_public_keys()
        self.well_known_values = WellKnownValuesApi(self.hub_public_keys, DCS_BASE_PATH)
        self.work_package: MintedWorkPackage = self.work_packages.mint(
            files_of(files), self.user_public_key
        )
        self.env_clients = env_clients
        self.app = build_app(
            self.archive,
            self.user_public_key,
            self.work_packages,
            self.well_known_values,
            env_clients=env_clients,
        )
        self._server: TcpWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._log_filter = _QuietInjectedFaults()

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind, serve in a background thread, and return once ``/health`` answers."""
        if self._server is not None:
            return self
        if self._data_removed:
            raise RuntimeError("this sandbox's temporary data is gone; build a new Sandbox")
        server = self._server = _create_server(self.app, self._host, self._port, self._threads)
        self._stopping.clear()
        logging.getLogger("waitress").addFilter(self._log_filter)
        self._thread = threading.Thread(
            target=self._run_loop, args=(server,), name="ghga-sandbox", daemon=True
        )
        self._thread.start()
        try:
            _wait_until_healthy(f"{self.dcs_url}/health", _READY_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.requests.clear()  # the log shows clients' requests, not our readiness probe
        self._port = int(server.effective_port)  # a restart keeps the URLs valid
        logger.info("GHGA sandbox serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Close all connections, stop the worker threads; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            self._cleanup_tempdir()
            return
        # The flag is set *in* the loop thread, so the trigger is still open when we pull it.
        server.trigger.pull_trigger(self._stopping.set)
        thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)
        server.trigger.close()  # only now: finishing workers may still pull it
        server._map.clear()
        logging.getLogger("waitress").removeFilter(self._log_filter)
        self._server = self._thread = None
        self._cleanup_tempdir()
        logger.info("GHGA sandbox stopped")

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run_loop(self, server: TcpWSGIServer) -> None:
        """The asyncore loop until :meth:`stop`; then close the connections and listener.

        The trigger stays open for :meth:`stop` to close once the workers are done.
        """
        socket_map = server._map
        use_poll = server.adj.asyncore_use_poll
        while socket_map and not self._stopping.is_set():
            wasyncore.loop(timeout=_LOOP_SLICE, map=socket_map, use_poll=use_poll, count=1)
        for dispatcher in list(socket_map.values()):
            with contextlib.suppress(OSError):
                if isinstance(dispatcher, HTTPChannel):
                    dispatcher.handle_close()  # also wakes a worker waiting to write
        with contextlib.suppress(OSError):
            wasyncore.dispatcher.close(server)  # the listening socket only, not the trigger

    def _cleanup_tempdir(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
            self._data_removed = True

    # --- addresses and environment ------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._server.effective_port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the bound address; IPv6 hosts get brackets)."""
        host = str(self._server.effective_host) if self._server else self._host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def dcs_url(self) -> str:
        return f"{self.base_url}{DCS_BASE_PATH}"

    @property
    def wkvs_url(self) -> str:
        """The well-known values root (``wkvs_url``; the official client's WKVS API URL)."""
        return f"{self.base_url}{WKVS_BASE_PATH}"

    @property
    def download_token(self) -> str:
        """``<work package id>:<sealed access token>`` for the minted work package."""
        return self.work_package.download_token

    @property
    def ghga_public_key(self) -> bytes:
        """GHGA's central public key: the writer of every envelope. Not in the WKVS,
        which lists the data hubs' keys (:attr:`hub_public_keys`)."""
        return self.archive.central_public_key

    @property
    def requests(self) -> RequestLog:
        return self.app.log

    @property
    def files(self) -> tuple[SandboxFile, ...]:
        return tuple(self.archive.specs.values())

    def env(self) -> dict[str, str]:
        """The ``GHGA_*`` variables a client needs for this sandbox: the env work package
        (served only with ``env_clients``), and the two the ``wps`` source needs."""
        specs = self.files
        return {
            "GHGA_DOWNLOAD_API_URL": self.dcs_url,
            "GHGA_FILE_IDS": ",".join(spec.file_id for spec in specs),
            "GHGA_FILE_EXTENSIONS": ",".join(spec.extension for spec in specs),
            "GHGA_USER_ID": self.user_id,
            "GHGA_USER_PUBLIC_KEY": base64.b64encode(self.user_public_key).decode("ascii"),
            "GHGA_PUBLIC_KEY": base64.b64encode(self.ghga_public_key).decode("ascii"),
            "GHGA_WKVS_URL": self.wkvs_url,
            "GHGA_DOWNLOAD_TOKEN": self.download_token,
        }

    # --- file facts for tests -------------------------------------------------------------

    def stored_file(self, file_id: str) -> StoredFile:
        """The generated file; KeyError for unknown or unavailable IDs."""
        try:
            return self.archive.stored[file_id]
        except KeyError:
            raise KeyError(
                f"no generated content for {file_id!r} (unknown or unavailable)"
            ) from None

    def plaintext_path(self, file_id: str) -> Path:
        return self.stored_file(file_id).plaintext_path

    def object_path(self, file_id: str) -> Path:
        return self.stored_file(file_id).object_path

    def checksum(self, file_id: str) -> str:
        """SHA-256 hex of the plaintext, as the DRS object reports it."""
        return self.stored_file(file_id).sha256

    def encrypted_size(self, file_id: str) -> int:
        return self.stored_file(file_id).encrypted_size

    def envelope(self, file_id: str) -> bytes:
        """The envelope the DCS would send the configured user for ``file_id``."""
        envelope = self.archive.envelope(file_id, self.user_public_key)
        if envelope is None:
            raise KeyError(f"no generated content for {file_id!r} (unknown or unavailable)")
        return envelope

    def presigned_url(self, file_id: str, ttl: float | None = None) -> str:
        """A presigned object URL as the DCS would hand out (negative ttl: expired)."""
        stored = self.stored_file(file_id)
        lifetime = self.archive.url_ttl if ttl is None else ttl
        path = f"{OUTBOX_PATH}/{stored.object_id}"
        base_url = self.archive.object_base_url or self.base_url
        return self.archive.presigner.url(base_url, path, lifetime)

    # --- faults --------------------------------------------------------------------------

    def set_faults(self, file_id: str, faults: Faults) -> Faults:
        """Inject ``faults`` into ``file_id``'s responses (object store and DCS)."""
        return self.archive.set_faults(file_id, faults)

    def set_global_faults(self, faults: Faults) -> Faults:
        """The same ``faults`` for every file, with one shared budget (``fail_times=3``
        means three failures in all, whichever files they hit)."""
        for file_id in self.archive.specs:
            self.archive.set_faults(file_id, faults)
        return faults

    def apply_faults(self, specs: Sequence[tuple[str | None, Faults]]) -> None:
        """``(file_id, faults)`` pairs as :func:`~.faults.parse_fault_spec` returns them;
        a None file ID means every file."""
        for file_id, faults in specs:
            if file_id is None:
                self.set_global_faults(faults)
            else:
                self.set_faults(file_id, faults)

    def faults(self, file_id: str) -> Faults | None:
        return self.archive.faults(file_id)

    def clear_faults(self, file_id: str | None = None) -> None:
        self.archive.clear_faults(file_id)


def _create_server(app: SandboxApp, host: str, port: int, threads: int) -> TcpWSGIServer:
    """A waitress server on exactly one socket (we drive its loop ourselves)."""
    server = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="ghga-sandbox"
    )
    if not isinstance(server, TcpWSGIServer):
        server.close()
        raise ValueError(f"host {host!r} resolves to several addresses; give one IP address")
    return server


class _QuietInjectedFaults(logging.Filter):
    """Keeps waitress from logging a traceback for every connection we break on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedFault))


def _wait_until_healthy(url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; bypasses proxy settings (loopback only)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not answer {url} within {timeout} s") from error
        time.sleep(0.02)


# --- scenario specs -------------------------------------------------------------------------

_SIZE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*")
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
_EXTENSION_CYCLE = (".bam", ".fastq.gz", "", ".vcf.gz", ".cram")


def parse_size(text: str | int) -> int:
    """``"1MB"`` → 1 000 000, ``"64MiB"`` → 67 108 864, ``"1500"`` → 1500."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 100kB, 1MB, 64MiB)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


def sandbox_file_id(number: int) -> str:
    """The n-th sandbox accession: ``GHGAF`` + 14 digits, as real accessions look."""
    return f"GHGAF{number:014d}"


def parse_file_specs(
    files: int,
    sizes: Sequence[int | str] = ("1MB",),
    stage_seconds: float = 0,
    unavailable: Sequence[str] = (),
    extensions: Sequence[str] = _EXTENSION_CYCLE,
) -> list[SandboxFile]:
    """Scenario for ``ghga-tasks sandbox --files N --sizes ... --unavailable ID``.

    IDs are ``sandbox_file_id(1..N)``; sizes and extensions repeat if shorter than N;
    ``stage_seconds`` applies to every file. An ``unavailable`` ID that is not among the
    generated ones is appended as an extra file the archive does not have (404).
    """
    if files < 0:
        raise ValueError("the number of files must be >= 0")
    byte_sizes = [parse_size(size) for size in sizes] or [1_000_000]
    ext_cycle = list(extensions) or [""]
    specs = [
        SandboxFile(
            file_id=sandbox_file_id(n),
            extension=ext_cycle[(n - 1) % len(ext_cycle)],
            size=byte_sizes[(n - 1) % len(byte_sizes)],
            stage_seconds=stage_seconds,
            available=sandbox_file_id(n) not in unavailable,
        )
        for n in range(1, files + 1)
    ]
    known = {spec.file_id for spec in specs}
    extras = [
        SandboxFile(file_id, available=False) for file_id in unavailable if file_id not in known
    ]
    return specs + list(dict.fromkeys(extras))


# --- the blocking CLI entry point -------------------------------------------------------------


@dataclass(frozen=True)
class UserKeyFiles:
    """The user key pair the sandbox hands to the client (unencrypted, by design)."""

    public_key_path: Path
    secret_key_path: Path
    public_key: bytes


def ensure_user_keypair(directory: Path) -> UserKeyFiles:
    """Reuse ``key.pub``/``key.sec`` in ``directory`` if both exist, else generate them.

    Reusing keeps a client's ``user_public_key`` setting valid across sandbox restarts.
    """
    guard_crypt4gh_key_logs()  # crypt4gh logs the new secret key at DEBUG level
    directory.mkdir(parents=True, exist_ok=True)
    pub, sec = directory / "key.pub", directory / "key.sec"
    if pub.exists() != sec.exists():
        raise ConfigurationError(
            setting=str(directory), problem="has only one of key.pub and key.sec; remove it"
        )
    if not pub.exists():
        with contextlib.redirect_stderr(io.StringIO()):  # crypt4gh prints a plain warning
            c4gh.generate(str(sec), str(pub), passphrase=None, comment=b"ghga-tasks sandbox user")
        logger.info("Generated an unencrypted sandbox user key pair in %s", directory)
    public_key = bytes(get_public_key(str(pub)))
    _check_pair(sec, public_key)
    return UserKeyFiles(pub, sec, public_key)


class _PassphraseProtected(Exception):
    """The existing key.sec asks for a passphrase; the sandbox never prompts."""


def _refuse_passphrase() -> str:
    raise _PassphraseProtected


def _check_pair(secret_key_path: Path, public_key: bytes) -> None:
    """Fail early if a reused key.sec does not belong to key.pub (skip if encrypted)."""
    try:
        secret_key = get_private_key(str(secret_key_path), _refuse_passphrase)
    except _PassphraseProtected:
        logger.info("%s is passphrase-protected; not checking it", secret_key_path)
        return
    if public_key_of(secret_key) != public_key:
        raise ConfigurationError(setting=str(secret_key_path), problem="does not match key.pub")


def format_env(env: dict[str, str]) -> str:
    """``KEY=value`` lines, as written to the env file."""
    return "".join(f"{key}={value}\n" for key, value in env.items())


def serve(
    files: Sequence[SandboxFile] = DEFAULT_FILES,
    directory: Path = Path("."),
    port: int = 0,
    env_file: Path | None = None,
    *,
    host: str = LOOPBACK,
    url_ttl: float = 30.0,
    on_ready: Callable[[Sandbox], None] | None = None,
    stop_event: threading.Event | None = None,
    faults: Sequence[tuple[str | None, Faults]] = (),
    env_clients: bool = False,
    retry_after_min: int = RETRY_AFTER_MIN,
) -> None:
    """Run a sandbox until SIGINT/SIGTERM (or ``stop_event``), then stop cleanly.

    ``directory`` receives the user key pair and the generated data; ``env_file`` gets
    the ``GHGA_*`` variables once ``/health`` answers and is removed again on stop, so
    it never points at a dead server. ``on_ready`` lets the CLI print the environment.
    ``faults`` are injected before the env file appears (``Sandbox.apply_faults``).
    ``env_clients`` and ``retry_after_min`` are :class:`Sandbox`'s (strict by default).
    """
    keys = ensure_user_keypair(directory)
    stop = stop_event or threading.Event()
    if env_file is not None:
        env_file.unlink(missing_ok=True)  # a stale file would point at a dead server
    shutil.rmtree(directory / "sandbox-data", ignore_errors=True)
    sandbox = Sandbox(
        files=files,
        user_public_key=keys.public_key,
        workdir=directory / "sandbox-data",
        port=port,
        host=host,
        url_ttl=url_ttl,
        env_clients=env_clients,
        retry_after_min=retry_after_min,
    )
    with _stop_on_signals(stop), sandbox:
        sandbox.apply_faults(faults)
        _announce(sandbox, env_file)
        if on_ready is not None:
            on_ready(sandbox)
        while not stop.wait(0.5):
            pass
    if env_file is not None:
        env_file.unlink(missing_ok=True)
    shutil.rmtree(directory / "sandbox-data", ignore_errors=True)


def _announce(sandbox: Sandbox, env_file: Path | None) -> None:
    """Write the env file (atomically) and log where the sandbox is."""
    env = sandbox.env()
    if env_file is not None:
        partial = env_file.with_name(env_file.name + ".part")
        partial.write_text(format_env(env))
        partial.replace(env_file)
    logger.info("GHGA sandbox ready at %s; environment:\n%s", sandbox.base_url, format_env(env))


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT/SIGTERM while inside; only the main thread can do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("Received %s, stopping the sandbox", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = [
    "DEFAULT_FILES",
    "FAST_RETRY_AFTER_MIN",
    "LOOPBACK",
    "Sandbox",
    "UserKeyFiles",
    "build_app",
    "ensure_user_keypair",
    "format_env",
    "hub_public_keys",
    "parse_file_specs",
    "parse_size",
    "sandbox_file_id",
    "serve",
]
