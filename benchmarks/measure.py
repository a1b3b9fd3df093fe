"""Running one competitor: wall time, exit code and peak memory of its process tree.

Peak RSS comes from two places. GNU ``time`` reports the largest single process of the
tree (``wait4``'s ``ru_maxrss`` covers waited-for descendants); it has to be GNU time,
not our own ``wait4``, because a child forked from this process inherits our high-water
mark, and the benchmark process holds the sandboxes. A sampler adds up the RSS of the
whole tree every few milliseconds (Snakemake plus its job, for example).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL = 0.05
GNU_TIME = "/usr/bin/time"
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Run:
    seconds: float
    returncode: int
    peak_rss: int  # bytes, the largest single process of the tree
    tree_rss: int  # bytes, the largest sampled sum over the whole tree
    log: Path
    transfer_seconds: float | None = None  # ghga_report.tsv's transfer times, summed
    finished_at: tuple[float, ...] = ()  # ghga_report.tsv's finish times, ascending (S8)


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    stdin_text: str | None = None,
    timeout: float = 1800.0,
) -> Run:
    """Run ``command`` to completion (killing its process group after ``timeout``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_name(log.name + ".maxrss")
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [GNU_TIME, "--format", "%M", "--output", str(rss_file), *command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: a timeout kills the whole tree
        )
        sampler = TreeSampler(process.pid)
        sampler.start()
        if stdin_text is not None and process.stdin is not None:
            process.stdin.write(stdin_text.encode())
            process.stdin.close()
        status = _wait(process, started + timeout)
        seconds = time.perf_counter() - started
        sampler.stop()
    peak = _peak_kib(rss_file) * 1024
    return Run(seconds, status, peak, sampler.peak, log)


def _wait(process: subprocess.Popen[bytes], deadline: float) -> int:
    """The exit code; the whole process group is killed once ``deadline`` passes."""
    try:
        return process.wait(timeout=max(deadline - time.perf_counter(), 0.001))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _peak_kib(rss_file: Path) -> int:
    """GNU time's ``%M``: the last line (it writes a "Command exited…" line first)."""
    try:
        return int(rss_file.read_text().split()[-1])
    except (OSError, IndexError, ValueError):
        return 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root = root
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_INTERVAL):
            self.peak = max(self.peak, sum(_rss(pid) for pid in _tree(self.root)))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from each thread's ``children`` list: cheap, unlike
    a scan of all of /proc (which took a third of a core at this sampling rate)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in os.scandir(f"/proc/{pid}/task"):
                todo.extend(int(child) for child in Path(task.path, "children").read_text().split())
        except OSError:
            continue  # the process ended meanwhile
    return found


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0
