"""A process-wide request to stop, for downloads that run in threads.

Inside Snakemake a download job is a thread of the Snakemake process (``run:`` with
``--force-use-threads``), and only the main thread ever sees a signal. The workflow calls
:func:`stop_on_signals` once Snakemake has set up its own handlers; from then on Ctrl-C or
SIGTERM first asks every download to stop (each removes its ``.part`` and raises
``KeyboardInterrupt``), then lets Snakemake's own handling go on.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

REQUESTED = threading.Event()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested."""
    if REQUESTED.is_set():
        raise KeyboardInterrupt("stop requested")


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, with ``KeyboardInterrupt``, on a stop request."""
    if REQUESTED.wait(max(seconds, 0.0)):
        raise KeyboardInterrupt("stop requested")


def stop_on_signals() -> None:
    """In the main thread: SIGINT and SIGTERM request a stop, then reach the handler that
    was there before (Snakemake's, or Python's ``KeyboardInterrupt``). A new run starts
    with no stop requested."""
    REQUESTED.clear()
    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if getattr(previous, "requests_stop", False):
            continue  # installed already (a second workflow in this process)
        signal.signal(signum, _chained(previous))


def _chained(previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        REQUESTED.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL and signum == signal.SIGINT:
            raise KeyboardInterrupt()
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    handler.requests_stop = True  # type: ignore[attr-defined]
    return handler
