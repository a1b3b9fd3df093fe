"""D1: decrypting a downloaded file. Memory must stay flat in the file size: the
``decrypt_file`` rule and ``ghga-tasks decrypt`` stream segment by segment (the same
``decrypt_file`` function), hashing the plaintext on the way to verify it.

Measured on a file of ``sizes.big`` (1 GiB) and one 16 times smaller; the reference
``crypt4gh decrypt`` tool decrypts the big one beside it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crypt4gh import lib

from ghga_tasks.core.tokens import read_private_key
from ghga_tasks.sandbox import UserKeyFiles, ensure_user_keypair

from .harness import Context
from .measure import Run, run_measured
from .results import MIB, Row

if TYPE_CHECKING:
    from .scenarios import Sizes

log = logging.getLogger("benchmarks")
BIN = Path(sys.executable).parent
FLAT = 1.1  # the big file's peak RSS over the small one's, at most


def d1_decrypt(ctx: Context, sizes: Sizes) -> list[Row]:
    keys = ensure_user_keypair(ctx.keys_dir)
    workdir = ctx.workdir / "decrypt"
    big, small = sizes.big, sizes.big // 16
    rows = []
    runs = {size: _ghga_tasks_decrypt(workdir, keys, size, ctx.rounds) for size in (small, big)}
    for size, measured in runs.items():
        rows.append(_row(f"ghga-tasks decrypt, {_mib(size)}", measured))
    flat = rows[-1]
    if flat.median is not None and rows[0].median:
        flat.ratio = flat.median / rows[0].median
        flat.baseline = f"the {_mib(small)} file"
        flat.target = f"≤ {FLAT}x the {_mib(small)} file (flat)"
        flat.met = flat.ratio <= FLAT
    rows.append(_row(f"crypt4gh decrypt, {_mib(big)}", [_reference_decrypt(workdir, keys, big)]))
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _ghga_tasks_decrypt(workdir: Path, keys: UserKeyFiles, size: int, rounds: int) -> list[Run]:
    source = _encrypted_file(workdir / f"in-{size}", keys, size)
    runs = []
    for round_ in range(rounds):
        out = workdir / f"out-{size}"
        shutil.rmtree(out, ignore_errors=True)
        key = str(keys.secret_key_path)
        command = [str(BIN / "ghga-tasks"), "decrypt", "--input-dir", str(source.parent),
                   "--output-dir", str(out), "--private-key", key]  # fmt: skip
        run = run_measured(
            command, cwd=workdir, env=os.environ, log=workdir / f"d1-{size}-{round_}.log"
        )
        if run.returncode != 0 or "verified" not in run.log.read_text():
            raise RuntimeError(f"D1: ghga-tasks decrypt failed, see {run.log}")
        runs.append(run)
    return runs


def _reference_decrypt(workdir: Path, keys: UserKeyFiles, size: int) -> Run:
    source = workdir / f"in-{size}" / "GHGAF1.bam.c4gh"
    output = workdir / "reference.bam"
    tool, key = shlex.quote(str(BIN / "crypt4gh")), shlex.quote(str(keys.secret_key_path))
    script = f"{tool} decrypt --sk {key} < {shlex.quote(str(source))} > {shlex.quote(str(output))}"
    return run_measured(["sh", "-c", script], cwd=workdir, env=os.environ, log=workdir / "ref.log")


def _encrypted_file(directory: Path, keys: UserKeyFiles, size: int) -> Path:
    """``GHGAF1.bam.c4gh`` of ``size`` random bytes for the user's key, and a report
    beside it with the plaintext's SHA-256, so the decryption verifies as after a run."""
    directory.mkdir(parents=True, exist_ok=True)
    plain, target = directory.parent / f"plain-{size}", directory / "GHGAF1.bam.c4gh"
    digest = hashlib.sha256()
    with plain.open("wb") as stream:
        for offset in range(0, size, 4 * MIB):
            block = os.urandom(min(4 * MIB, size - offset))
            digest.update(block)
            stream.write(block)
    secret = read_private_key(keys.secret_key_path, None, setting="benchmark key")
    public = keys.public_key
    with plain.open("rb") as infile, target.open("wb") as outfile:
        lib.encrypt([(0, secret, public)], infile, outfile)
    plain.unlink()
    (directory / "ghga_report.tsv").write_text(
        f"file_name\tcontent_sha256\n{target.name}\t{digest.hexdigest()}\n"
    )
    log.info("D1: encrypted %s for the decryption runs", _mib(size))
    return target


def _row(competitor: str, runs: list[Run]) -> Row:
    row = Row("D1", competitor, "peak RSS", "MiB", values=[run.peak_rss / MIB for run in runs])
    row.peak_rss_mib = max(run.peak_rss for run in runs) / MIB
    row.tree_rss_mib = max(run.tree_rss for run in runs) / MIB
    seconds = min(run.seconds for run in runs)
    row.note = f"{seconds:.1f} s"
    return row


def _mib(size: int) -> str:
    """1 GiB, 64 MiB, 512 KiB."""
    for unit, scale in (("GiB", 1024 * MIB), ("MiB", MIB)):
        if size >= scale:
            return f"{size / scale:.0f} {unit}"
    return f"{size / 1024:.0f} KiB"
