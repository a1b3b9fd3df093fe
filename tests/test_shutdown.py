"""The stop request that lets Ctrl-C and SIGTERM reach downloads running in threads."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from ghga_tasks.core import shutdown


@pytest.fixture
def handlers() -> Iterator[None]:
    """Restore SIGINT/SIGTERM handlers and a clear stop request after each test."""
    saved = {signum: signal.getsignal(signum) for signum in shutdown.STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    shutdown.REQUESTED.clear()


def test_a_staging_wait_ends_as_soon_as_a_stop_is_requested(handlers) -> None:
    threading.Timer(0.1, shutdown.REQUESTED.set).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        shutdown.sleep(30)
    assert time.monotonic() - started < 20  # not the 30 s asked for


def test_a_signal_requests_a_stop_then_reaches_the_previous_handler(handlers) -> None:
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    shutdown.stop_on_signals()
    shutdown.stop_on_signals()  # a second workflow in this process: not chained twice
    signal.raise_signal(signal.SIGTERM)
    assert shutdown.REQUESTED.is_set()
    assert seen == [signal.SIGTERM]  # Snakemake's own handler still runs, once


def test_ctrl_c_still_raises_keyboard_interrupt(handlers) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    shutdown.stop_on_signals()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert shutdown.REQUESTED.is_set()


def test_a_new_run_starts_with_no_stop_requested(handlers) -> None:
    shutdown.REQUESTED.set()
    shutdown.stop_on_signals()
    shutdown.check()  # does not raise
