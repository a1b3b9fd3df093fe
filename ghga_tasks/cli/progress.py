"""Progress of a running batch, read from the output directory while Snakemake works.

The download jobs are separate processes, so the CLI watches their files: a ``.part``
file's allocated blocks are the bytes written so far (ranges land at their offsets, so
its apparent size runs ahead), and a final ``.c4gh`` means that file is done. On a
terminal the current file gets a live bar; elsewhere (CI, nohup) a line per file.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click

from ghga_tasks.core.plan import PlanEntry
from ghga_tasks.core.report import human_bytes
from ghga_tasks.core.state import result_path

POLL_SECONDS = 0.5
BAR_WIDTH = 24


@dataclass
class _FileState:
    entry: PlanEntry
    started: float | None = None
    done: bool = False


class ProgressWatcher:
    """Shows per-file progress and an overall count until ``stop()``."""

    def __init__(self, output_dir: Path, entries: list[PlanEntry]) -> None:
        self.output_dir = output_dir
        self.files = [_FileState(e) for e in entries if e.to_download]
        self.live = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()  # report files that finished since the last poll
        if self.live:
            click.echo("\r\033[K", err=True, nl=False)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._poll()

    def _poll(self) -> None:
        for state in self.files:
            if state.done:
                continue
            final = self.output_dir / state.entry.file_name
            part = final.with_name(final.name + ".part")
            if final.exists():
                state.done = True
                self._finished(state, final.stat().st_size)
            elif part.exists():
                state.started = state.started or time.monotonic()
                if self.live:
                    self._draw(state, min(part.stat().st_blocks * 512, self._expected(state)))

    def _count(self) -> str:
        return f"[{sum(s.done for s in self.files)}/{len(self.files)}]"

    def _expected(self, state: _FileState) -> int:
        return max(state.entry.size, 1) if state.entry.size > 0 else 1 << 62

    def _finished(self, state: _FileState, size: int) -> None:
        seconds = self._transfer_seconds(state)
        rate = f", {human_bytes(size / seconds)}/s" if seconds > 0.05 else ""
        prefix = "\r\033[K" if self.live else ""
        click.echo(
            f"{prefix}{self._count()} {state.entry.file_name}: {human_bytes(size)}{rate}", err=True
        )

    def _transfer_seconds(self, state: _FileState) -> float:
        """The job's own timing when it recorded one; else what we saw from here."""
        record = result_path(self.output_dir, state.entry.file_name)
        if record.exists():
            return float(json.loads(record.read_text()).get("seconds", 0.0))
        return time.monotonic() - state.started if state.started else 0.0

    def _draw(self, state: _FileState, written: int) -> None:
        elapsed = max(time.monotonic() - (state.started or time.monotonic()), 1e-3)
        rate = written / elapsed
        total = state.entry.size if state.entry.size > 0 else 0
        fraction = written / total if total else 0.0
        eta = f"ETA {max(total - written, 0) / rate:.0f} s" if rate > 0 and total else ""
        bar = "#" * int(fraction * BAR_WIDTH)
        line = (
            f"{self._count()} {state.entry.file_name} [{bar:<{BAR_WIDTH}}] "
            f"{human_bytes(written)}/{human_bytes(total)} {human_bytes(rate)}/s {eta}"
        )
        click.echo(f"\r\033[K{line}", err=True, nl=False)
