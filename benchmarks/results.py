"""Result rows: one per scenario and competitor, with the median and its ratio."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass
class Row:
    """One competitor in one scenario. ``values`` are the per-round figures."""

    scenario: str
    competitor: str
    metric: str  # what the number is, e.g. "throughput"
    unit: str  # e.g. "MB/s", "s", "ms/file", "MiB"
    values: list[float] = field(default_factory=list)
    ratio: float | None = None  # median over the baseline (or the baseline over it)
    baseline: str = ""  # what the ratio compares with
    target: str = ""  # the target for this row, if any
    met: bool | None = None  # whether the target holds (None: no target)
    peak_rss_mib: float | None = None  # largest single process, max over rounds
    tree_rss_mib: float | None = None  # whole process tree, sampled, max over rounds
    note: str = ""  # "not run: ..." or "failed: ..." or context

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def ran(self) -> bool:
        return bool(self.values)


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"
