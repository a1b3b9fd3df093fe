"""The sandbox's archive state: which files exist, which are staged, their faults.

Shared by the Download Controller and the outbox handlers, which run on many server
threads at once, so every piece of mutable state here sits behind one lock.

Staging follows the real DCS (``docs/protocol.md``): a file not yet in the outbox answers
202 and the *first* 202 starts staging. ``Retry-After`` is not the time left but the DCS's
*estimate* for the whole file, the same on every probe: its decrypted size at
``staging_speed`` MB/s, rounded to whole seconds (Python's ``round``, as the DCS does) and
clamped to ``[retry_after_min, retry_after_max]``. How long staging really takes is the
file's own ``stage_seconds``, so a client that trusts the estimate may come back early or
late, as against GHGA.

Envelopes are written as the EKSS writes them: with the archive's own *central* secret key,
which is not among the data hub keys the WKVS publishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ghga_tasks.sandbox.faults import Faults
from ghga_tasks.sandbox.files import (
    SandboxFile,
    StoredFile,
    generate_secret_key,
    make_envelope,
    public_key_of,
    store_file,
)
from ghga_tasks.sandbox.presign import Presigner

logger = logging.getLogger(__name__)

# The DCS's defaults for its staging estimate (its config: staging_speed in MB/s,
# retry_after_min and retry_after_max in seconds).
STAGING_SPEED = 100
RETRY_AFTER_MIN = 5
RETRY_AFTER_MAX = 300


@dataclass(frozen=True)
class Staged:
    """The file is in the outbox."""

    file: StoredFile


@dataclass(frozen=True)
class Staging:
    """The file is being staged; ask again in ``retry_after`` seconds."""

    retry_after: int


@dataclass(frozen=True)
class Missing:
    """No such file in the archive (unknown ID or ``available=False``)."""


Probe = Staged | Staging | Missing


class Archive:
    """Generated files plus the mutable staging and fault state around them."""

    def __init__(
        self,
        files: Sequence[SandboxFile],
        workdir: Path,
        *,
        url_ttl: float = 30.0,
        staging_speed: int = STAGING_SPEED,
        retry_after_min: int = RETRY_AFTER_MIN,
        retry_after_max: int = RETRY_AFTER_MAX,
        central_secret_key: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        object_base_url: str | None = None,
    ) -> None:
        self.specs = _index_specs(files)
        self.url_ttl = url_ttl
        # Where presigned URLs point: None means this sandbox's own outbox. Benchmarks set
        # an nginx serving ``<workdir>/outbox`` at ``/s3/outbox/`` (it ignores the query),
        # so the Python object store is not what gets measured. May change between runs.
        self.object_base_url = object_base_url
        self.staging_speed = staging_speed
        self.retry_after_min = retry_after_min
        self.retry_after_max = retry_after_max
        self.presigner = Presigner()
        # The EKSS's server key: it writes every envelope and is published nowhere.
        self._central_secret_key = central_secret_key or generate_secret_key()
        self.central_public_key = public_key_of(self._central_secret_key)
        self._clock = clock
        self._lock = threading.Lock()
        self._staging_started: dict[str, float] = {}
        self._faults: dict[str, Faults] = {}
        self.stored = {spec.file_id: store_file(spec, workdir) for spec in files if spec.available}
        self._by_object = {stored.object_id: stored for stored in self.stored.values()}

    def probe(self, file_id: str) -> Probe:
        """Answer a DRS object request; the first probe of an unstaged file starts staging."""
        stored = self.stored.get(file_id)
        if stored is None:
            return Missing()
        stage_seconds = stored.spec.stage_seconds
        if stage_seconds == 0:
            return Staged(stored)
        now = self._clock()
        with self._lock:
            started = self._staging_started.setdefault(file_id, now)
        if now >= started + stage_seconds:
            return Staged(stored)
        return Staging(self.estimated_staging_seconds(file_id))

    def in_outbox(self, file_id: str) -> bool:
        """Whether the object can be fetched now (no side effect, unlike :meth:`probe`)."""
        stored = self.stored.get(file_id)
        if stored is None:
            return False
        if stored.spec.stage_seconds == 0:
            return True
        with self._lock:
            started = self._staging_started.get(file_id)
        return started is not None and self._clock() >= started + stored.spec.stage_seconds

    def reset_staging(self) -> None:
        """Forget which files were probed, so staging starts again from the next probe
        (benchmarks repeat a staging scenario without regenerating the files)."""
        with self._lock:
            self._staging_started.clear()

    def by_object_id(self, object_id: str) -> StoredFile | None:
        """The file stored under an outbox object UUID."""
        return self._by_object.get(object_id)

    def envelope(self, file_id: str, user_public_key: bytes) -> bytes | None:
        """The file's Crypt4GH envelope for ``user_public_key``; None if there is no file."""
        stored = self.stored.get(file_id)
        if stored is None:
            return None
        return make_envelope(stored.session_key, self._central_secret_key, user_public_key)

    def url_ttl_for(self, file_id: str) -> float:
        """Lifetime of a presigned URL issued now for ``file_id`` (a fault may shorten it)."""
        faults = self.faults(file_id)
        fault_ttl = faults.take_url_ttl() if faults else None
        return self.url_ttl if fault_ttl is None else fault_ttl

    def faults(self, file_id: str) -> Faults | None:
        with self._lock:
            return self._faults.get(file_id)

    def set_faults(self, file_id: str, faults: Faults) -> Faults:
        if file_id not in self.specs:
            raise KeyError(f"no sandbox file {file_id!r}")
        with self._lock:
            self._faults[file_id] = faults
        return faults

    def clear_faults(self, file_id: str | None = None) -> None:
        with self._lock:
            if file_id is None:
                self._faults.clear()
            else:
                self._faults.pop(file_id, None)

    def estimated_staging_seconds(self, file_id: str) -> int:
        """The DCS's ``Retry-After`` for a file being staged (see the module docstring).

        Unknown files get the minimum (an injected fault may report one as staging).
        """
        spec = self.specs.get(file_id)
        size = spec.size if spec is not None else 0
        estimate = round(size / (self.staging_speed * 1e6))
        return min(max(estimate, self.retry_after_min), self.retry_after_max)


def _index_specs(files: Sequence[SandboxFile]) -> dict[str, SandboxFile]:
    specs: dict[str, SandboxFile] = {}
    for spec in files:
        if spec.file_id in specs:
            raise ValueError(f"duplicate sandbox file ID {spec.file_id}")
        specs[spec.file_id] = spec
    return specs
