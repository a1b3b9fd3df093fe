"""Progress of a running batch, read from the output directory while Snakemake works.

The download jobs write where the CLI can see: a ``.part`` file's allocated blocks are the
bytes written so far (ranges land at their offsets, so its apparent size runs ahead), and
a final ``.c4gh`` means that file is done. The CLI polls them twice a second.

On a terminal two tqdm bars: the batch (files n/N, bytes done of the total known so far,
rate, time left) and the file being downloaded; tqdm smooths the rates, and a bar created
mid-file starts from the bytes already there, so the first rate is not a spike. Elsewhere
(CI, nohup, a log file) a line per finished file and a batch line every half minute:
nothing that floods a log.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ghga_tasks.core.plan import PlanEntry
from ghga_tasks.core.report import human_bytes
from ghga_tasks.core.state import failure_path, result_path

POLL_SECONDS = 0.5
BATCH_LINE_SECONDS = 30.0  # without a terminal
LOOK_AHEAD = 8  # files looked at past the first unfinished one, in each poll


@dataclass
class _FileState:
    entry: PlanEntry
    written: int = 0
    started: float | None = None
    done: bool = False


class ProgressWatcher:
    """Shows the batch's and the current file's progress while the workflow runs."""

    def __init__(self, output_dir: Path, entries: list[PlanEntry]) -> None:
        self.output_dir = output_dir
        self.files = [_FileState(e) for e in entries if e.to_download]
        self.live = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._started = time.monotonic()
        self._wall_started = time.time() - 1.0  # file times may lag the clock a little
        self._next = 0  # the first file that has not finished or failed in this run
        self._done = 0
        self._last_line = self._started
        self._bars = _Bars(self._known_total(), len(self.files)) if self.live else None

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll(everything=True)  # files that ended since the last poll
        if self._bars is not None:
            self._bars.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._poll()

    def _poll(self, *, everything: bool = False) -> None:
        """Look at the files from the first unfinished one on (all of them at the end).

        Downloads go one at a time in plan order, so a poll costs the files that ended
        since the last one, not the whole batch: with 10,000 files waiting, looking at
        every one took ~0.3 s of the process Snakemake runs in, twice a second (S8).
        """
        if everything:
            for state in self.files:
                if not state.done:
                    self._look_at(state)
        else:
            self._look_ahead()
        if self._bars is not None:
            self._bars.show_batch(self._done_count(), self._bytes(), self._known_total())
        elif time.monotonic() - self._last_line >= BATCH_LINE_SECONDS:
            self._last_line = time.monotonic()
            click.echo(self._batch_line(), err=True)

    def _look_ahead(self) -> None:
        """Past the files that finished or failed in this run, then a few beyond the first
        that has not (a file whose failure could not be recorded holds the line there)."""
        while self._next < len(self.files):
            state = self.files[self._next]
            if not state.done:
                self._look_at(state)
            if not (state.done or self._failed(state)):
                break
            self._next += 1
        for state in self.files[self._next + 1 : self._next + 1 + LOOK_AHEAD]:
            if not state.done:
                self._look_at(state)

    def _failed(self, state: _FileState) -> bool:
        """A failure record from this run (an older one goes when its retry starts)."""
        try:
            when = failure_path(self.output_dir, state.entry.file_name).stat().st_mtime
        except OSError:
            return False
        return when >= self._wall_started

    def _look_at(self, state: _FileState) -> None:
        final = self.output_dir / state.entry.file_name
        part = final.with_name(final.name + ".part")
        if final.exists():
            state.done, state.written = True, final.stat().st_size
            self._done += 1
            self._finished(state)
        elif part.exists():
            state.started = state.started or time.monotonic()
            state.written = min(part.stat().st_blocks * 512, _expected(state.entry))
            if self._bars is not None:
                self._bars.show_file(state.entry, state.written)

    def _finished(self, state: _FileState) -> None:
        seconds = self._transfer_seconds(state)
        rate = f", {human_bytes(state.written / seconds)}/s" if seconds > 0.05 else ""
        line = f"[{self._done_count()}/{len(self.files)}] {state.entry.file_name}: "
        line += f"{human_bytes(state.written)}{rate}"
        if self._bars is not None:
            self._bars.write(line)
        else:
            click.echo(line, err=True)

    def _transfer_seconds(self, state: _FileState) -> float:
        """The job's own timing when it recorded one; else what we saw from here."""
        record = result_path(self.output_dir, state.entry.file_name)
        if record.exists():
            return float(json.loads(record.read_text()).get("seconds", 0.0))
        return time.monotonic() - state.started if state.started else 0.0

    def _batch_line(self) -> str:
        done, total = self._bytes(), self._known_total()
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", about {(total - done) / rate:.0f} s left" if rate > 0 and total > done else ""
        return (
            f"[{self._done_count()}/{len(self.files)}] {human_bytes(done)} of "
            f"{human_bytes(total)} known so far, {human_bytes(rate)}/s{left}"
        )

    def _done_count(self) -> int:
        return self._done  # counted, not summed: it is asked once per finished file

    def _bytes(self) -> int:
        return sum(state.written for state in self.files)

    def _known_total(self) -> int:
        """Bytes of the files whose size the plan knows (staging files' comes later)."""
        return sum(s.written if s.done else max(s.entry.size, 0) for s in self.files)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


def _expected(entry: PlanEntry) -> int:
    return entry.size if entry.size > 0 else 1 << 62


class _Bars:
    """The two tqdm bars of a terminal: the batch, and the file being downloaded."""

    def __init__(self, total: int, files: int) -> None:
        from tqdm import tqdm  # only at a terminal: nothing to import for a log file

        self._tqdm = tqdm
        self.files = files
        # A terminal that reports no size (`script`, some emulators) would hide both bars.
        self._width = {} if _terminal_width() else {"ncols": 100, "nrows": 24}
        self.batch: Any = tqdm(
            total=total, unit="B", unit_scale=True, position=0, leave=False,
            desc=f"[0/{files}] batch", file=sys.stderr, dynamic_ncols=True, **self._width,
        )  # fmt: skip
        self.file: Any = None
        self.current = ""

    def show_batch(self, done_files: int, done: int, total: int) -> None:
        self.batch.total = max(total, done)
        self.batch.set_description_str(f"[{done_files}/{self.files}] batch", refresh=False)
        self.batch.update(done - self.batch.n)

    def show_file(self, entry: PlanEntry, written: int) -> None:
        if self.current != entry.file_name:
            self._close_file()
            self.current = entry.file_name
            self.file = self._tqdm(
                total=entry.size if entry.size > 0 else None, initial=written, unit="B",
                unit_scale=True, position=1, leave=False, desc=entry.file_name,
                file=sys.stderr, dynamic_ncols=True, **self._width,
            )  # fmt: skip
        self.file.update(written - self.file.n)

    def write(self, line: str) -> None:
        self._close_file()
        self._tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self._close_file()
        self.batch.close()

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file, self.current = None, ""
