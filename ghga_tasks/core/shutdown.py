"""A process-wide request to stop, for downloads that run in threads.

Inside Snakemake a download job is a thread of the Snakemake process (``run:`` with
``--force-use-threads``), and only the main thread ever sees a signal. :func:`watch_signals`
makes Ctrl-C and SIGTERM set :data:`REQUESTED`, which the transfer and the staging wait
check every 0.1 s: the download removes its ``.part`` and stops.

How: ``signal.set_wakeup_fd``. Python's C-level signal handler writes the number of every
signal that has a Python handler into that descriptor, whoever's handler it is, and a
small thread reads it. So it keeps working when Snakemake installs its own SIGTERM handler
after us (its scheduler does, when it starts), or asyncio swaps the SIGINT handler for a
moment, and it never changes what those handlers do. A wake-up descriptor that was set
before ours (rare) still gets every byte.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

REQUESTED = threading.Event()
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested."""
    if REQUESTED.is_set():
        raise KeyboardInterrupt("stop requested")


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, with ``KeyboardInterrupt``, on a stop request."""
    with polling():
        stopped = REQUESTED.wait(max(seconds, 0.0))
    if stopped:
        raise KeyboardInterrupt("stop requested")


@contextlib.contextmanager
def polling() -> Iterator[None]:
    """Marks a wait in which this thread checks :data:`REQUESTED` itself, often.

    A signal handler that raises ``KeyboardInterrupt`` lands wherever the main thread is;
    inside ``threading``'s lock waits that can break the lock ("release unlocked lock")
    instead of interrupting. :func:`interrupt` leaves such a wait to notice the request.
    """
    before = getattr(_state, "polling", False)
    _state.polling = True
    try:
        yield
    finally:
        _state.polling = before


def interrupt(signum: int, _frame: FrameType | None) -> None:
    """A signal handler for a process whose main thread downloads (``ghga-tasks step``):
    request a stop, and raise ``KeyboardInterrupt`` unless the main thread is polling or
    already stopping (a second signal must not break the clean-up of the first).

    "Already stopping" is this handler's own record, not :data:`REQUESTED`: a signal
    watcher thread in the same process may set that first, and the interrupt must still
    come."""
    REQUESTED.set()
    if _interrupted.is_set() or getattr(_state, "polling", False):  # handlers: main thread
        return
    _interrupted.set()
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def reset() -> None:
    """A new run in this process: no stop requested, no interrupt raised yet."""
    REQUESTED.clear()
    _interrupted.clear()


_interrupted = threading.Event()  # set once :func:`interrupt` has raised


_state = threading.local()


def watch_signals() -> None:
    """Main thread only: from now on SIGINT and SIGTERM also request a stop. A new run
    starts with no stop requested; calling it again only does that."""
    reset()
    if _watcher.is_set():
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    thread = threading.Thread(
        target=_watch, args=(read_end, previous), name="ghga-tasks-signals", daemon=True
    )
    thread.start()
    _watcher.set()


_watcher = threading.Event()  # set once the process has its watcher thread


def _watch(read_end: int, previous: int) -> None:
    while chunk := os.read(read_end, 64):
        if STOP_SIGNALS & set(chunk):
            REQUESTED.set()
        if previous >= 0:
            with contextlib.suppress(OSError):
                os.write(previous, chunk)
