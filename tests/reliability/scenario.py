"""Running a fault scenario as a user would, and measuring the promise afterwards.

The fault suite (``tests/test_faults*.py``, ``tests/test_signals.py``) drives the real
``ghga-tasks step plan`` / ``step download`` commands (the ones every Snakemake job runs)
in-process against the sandbox, then counts what must never happen: a ``.part`` left
behind, a final ``.c4gh`` that does not decrypt to the archive's bytes, a secret in any
output. Every scenario records its figures with pytest's ``record_property``, so
``--junitxml`` carries them to ``tests/reliability/report.py``, which writes
``docs/reliability.md``.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from crypt4gh import lib

from ghga_tasks.cli import main
from ghga_tasks.core import state
from ghga_tasks.core.plan import plan_path, read_plan
from ghga_tasks.core.resume import SIDECAR_SUFFIX, kept_bytes
from ghga_tasks.core.settings import Settings
from ghga_tasks.core.work_package import FileSpec, typed_extension
from ghga_tasks.sandbox import Sandbox

WORK_ORDER_TOKEN = "wot-" + "5ecret" * 8  # sent on every API call; must never be printed
_ERROR_LINE = re.compile(r"^Error: .*$", re.MULTILINE)


@dataclass
class Run:
    """What a user saw: the exit code, every printed line, and the line that matters."""

    exit_code: int
    output: str
    user_sees: str


@dataclass
class Promise:
    """What must be zero after every scenario."""

    stray_part_files: int
    corrupt_final_files: int
    secrets_in_logs: int
    final_files: int


@contextmanager
def _restored_logging() -> Iterator[None]:
    """The CLI reconfigures the root logger onto CliRunner's stream; undo that after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def invoke(args: Sequence[str], env: Mapping[str, str]) -> Run:
    """``ghga-tasks ARGS`` in this process, with ``env`` added to the environment."""
    with _restored_logging():
        result = CliRunner().invoke(main, list(args), env=dict(env), catch_exceptions=True)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += f"\nUnhandled {type(result.exception).__name__}: {result.exception}"
    errors = _ERROR_LINE.findall(output)
    lines = [line for line in output.splitlines() if line.strip()]
    return Run(result.exit_code, output, errors[0] if errors else (lines[-1] if lines else ""))


@dataclass
class Batch:
    """The step commands of one batch run, as Snakemake runs them (``--keep-going``)."""

    sandbox: Sandbox
    settings: Settings
    env_overrides: dict[str, str] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.sandbox.env(),
            "GHGA_WORK_ORDER_TOKEN": WORK_ORDER_TOKEN,
            **self.env_overrides,
        }

    def plan(self) -> Run:
        run = invoke(["step", "plan", "--settings", self.settings.to_json()], self.env)
        self.runs.append(run)
        return run

    def download(self, file_name: str) -> Run:
        settings_file = state.settings_path(self.settings.output_dir)
        run = invoke(["step", "download", "--settings", str(settings_file), file_name], self.env)
        self.runs.append(run)
        return run

    def download_planned(self, between: Callable[[], None] = lambda: None) -> Run:
        """Every file the plan says to download, in plan order; ``between`` runs after
        the plan (to change faults mid-batch). Returns the combined outcome."""
        planned = self.plan()
        if planned.exit_code != 0:
            return planned
        between()
        entries = read_plan(plan_path(self.settings.output_dir))
        results = [self.download(e.file_name) for e in entries if e.to_download]
        return combined(planned, results)


def combined(planned: Run, downloads: list[Run]) -> Run:
    """One outcome for a batch: the first failure, or how many files arrived."""
    failures = [run for run in downloads if run.exit_code != 0]
    output = "\n".join(run.output for run in [planned, *downloads])
    if failures:
        first = failures[0]
        return Run(first.exit_code, output, first.user_sees or first.output.strip()[-200:])
    return Run(0, output, f"all {len(downloads)} planned file(s) downloaded")


def suite_settings(tmp_path: Path, user_keys: Any, **overrides: Any) -> Settings:
    """Fault-suite settings: several 64 KiB ranges per file, a 1 s stall limit, three
    retries per range; ``overrides`` win."""
    values: dict[str, Any] = {
        "output_dir": tmp_path / "downloads",
        "user_public_key": user_keys.public_key_path,
        "user_private_key": user_keys.secret_key_path,
        "part_size": 64 * 1024,
        "connections": 4,
        "connect_timeout": 2.0,
        "read_timeout": 1.0,
        "range_retries": 3,
        "max_wait_time": 10.0,
        **overrides,
    }
    return Settings(**values)


def secrets_of(sandbox: Sandbox, secret_key: bytes) -> list[str]:
    """Texts that must never appear in any output: keys, session keys, the token, and
    presigned-URL signatures (found by their parameter name)."""
    keys = [secret_key, *(stored.session_key for stored in sandbox.archive.stored.values())]
    texts = [WORK_ORDER_TOKEN, "signature="]
    for key in keys:
        texts += [key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()]
    return texts


def decrypts_to(path: Path, secret_key: bytes, expected: Path) -> bool:
    out = io.BytesIO()
    try:
        with path.open("rb") as stream:
            lib.decrypt([(0, secret_key, None)], stream, out)
    except Exception:  # any failure to decrypt means "corrupt"
        return False
    return out.getvalue() == expected.read_bytes()


def check_promise(
    output_dir: Path,
    sandbox: Sandbox,
    secret_key: bytes,
    texts: Sequence[str],
    *,
    ignore: set[str] = frozenset(),  # type: ignore[assignment]
    resume_partial: bool = False,
) -> Promise:
    """Count stray ``.part`` files, corrupt final files and leaked secrets; ``ignore``
    names files that are the user's own, not downloads. With ``resume_partial`` a
    ``.part`` whose sidecar records bytes to resume is kept on purpose, not stray; a
    sidecar is stray without its ``.part``, or without ``resume_partial``."""
    parts = _stray_parts(output_dir, resume_partial) if output_dir.exists() else []
    finals = [p for p in output_dir.glob("*.c4gh") if p.name not in ignore]
    file_ids = {
        FileSpec(spec.file_id, typed_extension(spec.extension)).file_name: (spec.file_id)
        for spec in sandbox.files
    }
    corrupt = 0
    for final in finals:
        file_id = file_ids.get(final.name)
        if file_id is None or not decrypts_to(final, secret_key, sandbox.plaintext_path(file_id)):
            corrupt += 1
    logs = [*texts, *_log_files(output_dir)]
    secrets = secrets_of(sandbox, secret_key)
    leaks = sum(text.count(secret) for text in logs for secret in secrets)
    return Promise(len(parts), corrupt, leaks, len(finals))


def _stray_parts(output_dir: Path, resume_partial: bool) -> list[Path]:
    parts = list(output_dir.glob("*.part"))
    stray = [part for part in parts if not (resume_partial and kept_bytes(part))]
    sidecars = output_dir.glob(f"*.part{SIDECAR_SUFFIX}")
    stray += [s for s in sidecars if not resume_partial or s.with_suffix("") not in parts]
    return stray


def _log_files(output_dir: Path) -> list[str]:
    logs = output_dir / "logs"
    if not logs.is_dir():
        return []
    return [p.read_text(errors="replace") for p in logs.rglob("*.log")]


def record(
    record_property: Callable[[str, Any], None],
    *,
    scenario: str,
    area: str,
    run: Run,
    promise: Promise,
) -> None:
    """Attach the scenario's figures to the test's junit entry for the report."""
    for name, value in {
        "scenario": scenario,
        "area": area,
        "user_sees": " ".join(run.user_sees.split())[:300],
        "exit_code": run.exit_code,
        "stray_part_files": promise.stray_part_files,
        "corrupt_final_files": promise.corrupt_final_files,
        "secrets_in_logs": promise.secrets_in_logs,
        "final_files": promise.final_files,
    }.items():
        record_property(name, value)


def assert_promise_kept(promise: Promise) -> None:
    assert promise.stray_part_files == 0, "a .part file was left behind"
    assert promise.corrupt_final_files == 0, "a final file does not decrypt to the archive's bytes"
    assert promise.secrets_in_logs == 0, "a secret appeared in the output"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
