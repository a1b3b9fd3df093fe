"""``python -m benchmarks``: prepare, run every scenario, write the table and the plot."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .competitors import CONNECTOR_VERSION, OFFICIAL, REPO, connector_venv
from .harness import SANDBOX_ROOTS, Context
from .objectserver import ObjectServer
from .report import (
    SCALE_CSV,
    markdown_table,
    read_csv,
    read_scale,
    write_csv,
    write_plot,
    write_scale,
    write_scale_plot,
)
from .results import Row
from .resume import r1_resume
from .scenarios import ALL_COMPETITORS, FULL, SCENARIOS, SMOKE, SMOKE_COMPETITORS, Sizes

SCENARIOS = {**SCENARIOS, "R1": r1_resume}  # benchmarks/resume.py: resuming a killed file
log = logging.getLogger("benchmarks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round (for CI)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3; smoke 1)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="e.g. S1,S4")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ghga-tasks-bench"),
                        help="scratch space for objects and downloads (needs ~14 GiB)")  # fmt: skip
    parser.add_argument("--replot", action="store_true",
                        help="only redraw results.png from results.csv")  # fmt: skip
    parser.add_argument("--no-official", action="store_true",
                        help=f"skip the official ghga-connector {CONNECTOR_VERSION}")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("crypt4gh", "ghga_tasks", "waitress"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # waitress warns whenever requests queue up, which S5's 20,000 requests make it do.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    sizes = SMOKE if args.smoke else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    out = args.out or (args.workdir / "results" if args.smoke else REPO / "benchmarks" / "results")
    if args.replot:
        rows = read_csv(out / "results.csv")
        write_plot(rows, out / "results.png")
        if (out / SCALE_CSV).is_file():
            write_scale_plot(read_scale(out / SCALE_CSV), out / "s8_scale.png")
        print(markdown_table(rows))
        return 0
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    curves: dict[str, tuple[float, ...]] = {}
    rows = run_all(args, sizes, chosen, curves)
    write_results(rows, out, args, time.monotonic() - started)
    if curves:
        write_scale(curves, out)
    return 0


def run_all(
    args: argparse.Namespace,
    sizes: Sizes,
    chosen: list[str],
    curves: dict[str, tuple[float, ...]] | None = None,
) -> list[Row]:
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    roots = [args.workdir / f"sandbox-{root}" for root in SANDBOX_ROOTS]
    limits: dict[str, str | None] = {"unlimited": None, "capped": sizes.rate}
    rows: list[Row] = []
    with ObjectServer(args.workdir / "nginx", roots, limits) as objects:
        ctx = Context(args.workdir, sizes.rounds, objects, args.workdir / "keys")
        ctx.skip.update(skipped_competitors(args))
        try:
            for name in chosen:
                log.info("=== %s ===", name)
                rows += SCENARIOS[name](ctx, sizes)
        finally:
            ctx.close()
            if curves is not None:
                curves.update(ctx.curves)
    shutil.rmtree(args.workdir / "runs", ignore_errors=True)
    return rows


def skipped_competitors(args: argparse.Namespace) -> dict[str, str]:
    """Competitors that do not run, and why; installs the official client if needed."""
    if args.smoke:
        return {name: "not run: --smoke" for name in ALL_COMPETITORS - SMOKE_COMPETITORS}
    if args.no_official:
        return {OFFICIAL.name: "not run: --no-official"}
    venv = connector_venv()
    if not (venv / "bin" / "ghga-connector").exists():
        log.info("installing ghga-connector==%s into %s", CONNECTOR_VERSION, venv)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet"]
        result = subprocess.run(
            [*pip, f"ghga-connector=={CONNECTOR_VERSION}"], capture_output=True, text=True
        )
        if result.returncode != 0:
            return {OFFICIAL.name: f"not run: pip install failed: {result.stderr[-200:]}"}
    return {}


def write_results(rows: list[Row], out: Path, args: argparse.Namespace, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    write_plot(rows, out / "results.png")
    table = markdown_table(rows)
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    (out / "results.md").write_text(
        f"{table}\nCommand: `{command.strip()}` ({seconds / 60:.1f} min)\n\n{machine()}"
    )
    print(table)
    print(f"Results in {out} (results.csv, results.md, results.png)")


def machine() -> str:
    """The machine and tool versions, for the results file."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {
        "curl": _version(["curl", "--version"]),
        "aria2c": _version(["aria2c", "--version"]),
        "nginx": _version(["nginx", "-v"]),
        "snakemake": _version([sys.executable, "-m", "snakemake", "--version"]),
        "ghga-tasks": _version(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [f"- Machine: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
             f"Linux {platform.release()}, Python {platform.python_version()}",
             f"- Load average at the end (1 / 5 / 15 min): {load}"]  # fmt: skip
    lines += [f"- {name}: {version}" for name, version in versions.items()]
    return "\n".join(lines) + "\n"


def _version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


if __name__ == "__main__":
    sys.exit(main())
