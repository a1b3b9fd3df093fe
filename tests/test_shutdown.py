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
    shutdown.reset()  # whatever an earlier test in this process left
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    # A watcher thread (watch_signals, in this process since an earlier test) sees each
    # signal a moment later: let it, so its stop request does not reach the next test.
    time.sleep(0.3)
    shutdown.reset()


def test_a_staging_wait_ends_as_soon_as_a_stop_is_requested(handlers) -> None:
    threading.Timer(0.1, shutdown.REQUESTED.set).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        shutdown.sleep(30)
    assert time.monotonic() - started < 20  # not the 30 s asked for


def test_a_signal_requests_a_stop_whoever_handles_it(handlers) -> None:
    shutdown.watch_signals()
    seen: list[int] = []
    # Installed after us, as Snakemake's scheduler installs its SIGTERM handler.
    signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    shutdown.watch_signals()  # a second run in this process: one watcher still
    signal.raise_signal(signal.SIGTERM)
    assert shutdown.REQUESTED.wait(5)
    assert seen == [signal.SIGTERM]  # Snakemake's own handler still runs, once
    assert [t.name for t in threading.enumerate()].count("ghga-tasks-signals") == 1


def test_ctrl_c_still_raises_keyboard_interrupt(handlers) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    shutdown.watch_signals()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert shutdown.REQUESTED.wait(5)


def test_other_signals_request_nothing(handlers) -> None:
    shutdown.watch_signals()
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
    signal.raise_signal(signal.SIGUSR1)
    time.sleep(0.2)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    assert not shutdown.REQUESTED.is_set()


def test_a_new_run_starts_with_no_stop_requested(handlers) -> None:
    shutdown.REQUESTED.set()
    shutdown.watch_signals()
    shutdown.check()  # does not raise


def test_a_step_process_signal_never_lands_inside_a_polling_wait(handlers) -> None:
    """``ghga-tasks step``: while the main thread polls, a signal only requests the stop;
    the wait sees it and raises KeyboardInterrupt itself, at a safe point."""
    signal.signal(signal.SIGTERM, shutdown.interrupt)
    threading.Timer(0.1, signal.raise_signal, args=(signal.SIGTERM,)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="stop requested"):  # from sleep, not the handler
        shutdown.sleep(30)
    assert time.monotonic() - started < 20


def test_outside_a_polling_wait_a_step_process_signal_interrupts_at_once(handlers) -> None:
    signal.signal(signal.SIGTERM, shutdown.interrupt)
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM"):
        signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGTERM)  # a second one while stopping: no new interrupt
    assert shutdown.REQUESTED.is_set()


def test_a_step_process_signal_interrupts_even_when_a_watcher_saw_it_first(handlers) -> None:
    """A signal watcher in the same process may set the stop request before the handler
    runs; the handler must still raise (CI once ran them in that order)."""
    signal.signal(signal.SIGTERM, shutdown.interrupt)
    shutdown.REQUESTED.set()  # what the watcher thread does
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM"):
        signal.raise_signal(signal.SIGTERM)
