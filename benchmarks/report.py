"""Writing the results: CSV, a markdown table and a PNG plot."""

from __future__ import annotations

import csv
from pathlib import Path

from .results import Row, fmt

CSV_COLUMNS = [
    "scenario", "competitor", "metric", "unit", "median", "rounds", "values", "ratio",
    "baseline", "target", "met", "peak_rss_mib", "tree_rss_mib", "note",
]  # fmt: skip


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.scenario, row.competitor, row.metric, row.unit,
                    _num(row.median), len(row.values), " ".join(f"{v:.4g}" for v in row.values),
                    _num(row.ratio), row.baseline, row.target,
                    "" if row.met is None else ("yes" if row.met else "no"),
                    _num(row.peak_rss_mib), _num(row.tree_rss_mib), row.note,
                ]
            )  # fmt: skip


def read_csv(path: Path) -> list[Row]:
    """Rows back from ``results.csv`` (to redraw the plot without measuring again)."""
    with path.open(newline="") as stream:
        return [_row(record) for record in csv.DictReader(stream)]


def _row(record: dict[str, str]) -> Row:
    number = lambda text: float(text) if text else None  # noqa: E731
    return Row(
        record["scenario"], record["competitor"], record["metric"], record["unit"],
        values=[float(v) for v in record["values"].split()], ratio=number(record["ratio"]),
        baseline=record["baseline"], target=record["target"],
        met={"yes": True, "no": False}.get(record["met"]),
        peak_rss_mib=number(record["peak_rss_mib"]), tree_rss_mib=number(record["tree_rss_mib"]),
        note=record["note"],
    )  # fmt: skip


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| Scenario | Competitor | Median | Ratio | Target | Peak RSS (MiB) | Note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        median = f"{fmt(row.median)} {row.unit}" if row.ran else "—"
        ratio = f"{fmt(row.ratio)} x {row.baseline}" if row.ratio is not None else "—"
        met = {True: " ✅", False: " ❌", None: ""}[row.met]
        rss = fmt(row.peak_rss_mib, 0) if row.peak_rss_mib is not None else "—"
        if row.tree_rss_mib is not None and row.peak_rss_mib is not None:
            rss += f" (tree {fmt(row.tree_rss_mib, 0)})"
        lines.append(
            f"| {row.scenario} | {row.competitor} | {median} | {ratio} | "
            f"{row.target}{met} | {rss} | {row.note} |"
        )
    return "\n".join(lines) + "\n"


def write_plot(rows: list[Row], path: Path) -> None:
    """One panel per scenario: the median per competitor, the baseline ratio on the bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    columns = 2
    lines = -(-len(scenarios) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(16, 3.6 * lines), squeeze=False)
    figure.suptitle(
        "Medians per competitor; (n x) = ratio to the scenario's baseline; "
        "red = misses the issue's target",
        fontsize=11,
    )
    for axis, scenario in zip(axes.flat, scenarios, strict=False):
        _panel(axis, [row for row in rows if row.scenario == scenario], scenario)
    for axis in list(axes.flat)[len(scenarios) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _panel(axis: object, rows: list[Row], scenario: str) -> None:
    names = [row.competitor for row in rows]
    medians = [row.median or 0.0 for row in rows]
    colors = ["#c0392b" if row.met is False else "#2e86c1" for row in rows]
    bars = axis.barh(names, medians, color=colors)  # type: ignore[attr-defined]
    for bar, row in zip(bars, rows, strict=True):
        label = fmt(row.median) if row.ran else row.note[:40]
        if row.ratio is not None:
            label += f"  ({fmt(row.ratio)}x)"
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {label}",  # type: ignore[attr-defined]
                  va="center", fontsize=8)  # fmt: skip
    unit = rows[0].unit if rows else ""
    axis.set_title(f"{scenario} ({rows[0].metric if rows else ''}, {unit})", fontsize=10)  # type: ignore[attr-defined]
    axis.invert_yaxis()  # type: ignore[attr-defined]
    axis.margins(x=0.35)  # type: ignore[attr-defined]


SCALE_CSV = "s8_scale.csv"
SCALE_PNG = "s8_scale.png"


def write_scale(curves: dict[str, tuple[float, ...]], out: Path) -> None:
    """S8's finish times (seconds after each run's first file) and their plot."""
    with (out / SCALE_CSV).open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["competitor", "file", "seconds"])
        for name, times in curves.items():
            writer.writerows([name, n, f"{t - times[0]:.4f}"] for n, t in enumerate(times, 1))
    write_scale_plot(curves, out / SCALE_PNG)


def read_scale(path: Path) -> dict[str, tuple[float, ...]]:
    curves: dict[str, list[float]] = {}
    with path.open(newline="") as stream:
        for record in csv.DictReader(stream):
            curves.setdefault(record["competitor"], []).append(float(record["seconds"]))
    return {name: tuple(times) for name, times in curves.items()}


def write_scale_plot(curves: dict[str, tuple[float, ...]], path: Path) -> None:
    """The cost per file along one run (rolling over a 40th of the batch), per front end:
    flat is the goal; a scheduler that weighs every waiting file slopes down (the early
    files, with the most still waiting, are the dear ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    for name, times in curves.items():
        window = max(len(times) // 40, 2)
        positions = list(range(window + 1, len(times) + 1, max(len(times) // 400, 1)))
        costs = [(times[n - 1] - times[n - 1 - window]) * 1000 / window for n in positions]
        axis.plot(positions, costs, label=f"{name} ({window} files rolling)")
    for mark in (len(next(iter(curves.values()), ())) * f // 10 for f in (1, 4, 10)):
        axis.axvline(mark, color="grey", linewidth=0.6, linestyle=":")
    axis.set_xlabel("files finished")
    axis.set_ylabel("ms per file")
    axis.set_ylim(bottom=0)
    axis.set_title("S8: cost per file along one batch (flat = independent of the batch size)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
