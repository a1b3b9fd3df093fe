"""Pure functions of the core: range splitting, Retry-After, envelope checks, plan order,
settings, and the layering rule that the core never imports snakemake or click."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml

from ghga_tasks.core.api import DEFAULT_RETRY_AFTER, Staged, Staging, Unavailable, parse_retry_after
from ghga_tasks.core.download import wait_until_staged
from ghga_tasks.core.envelope import b64, check_envelope, check_writer, decode_envelope_body
from ghga_tasks.core.errors import ConfigurationError, EnvelopeRejected
from ghga_tasks.core.plan import (
    ENVELOPE_SIZE,
    PlanEntry,
    Status,
    bytes_needed,
    classify,
    delivered_names,
    order_entries,
    read_plan,
    write_plan,
)
from ghga_tasks.core.settings import Settings, normalize_config
from ghga_tasks.core.transfer import MIN_RANGE, split_ranges
from ghga_tasks.core.work_package import FileSpec

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("size", "connections", "part_size"),
    [
        (1, 4, 16),  # smaller than the connection count
        (100, 4, 16),  # several waves
        (1000, 3, 1000),  # one part: no range is smaller than part_size
        (65_564 * 7 + 5, 4, 65_536),  # odd size
        (3 * 1024 * 1024, 4, 16 * 1024 * 1024),  # small: ranges of 64 KiB at least
        (64 * 1024, 4, 16 * 1024 * 1024),  # one range, no connection threads
    ],
)
def test_ranges_cover_the_object_exactly_and_evenly(
    size: int, connections: int, part_size: int
) -> None:
    ranges = split_ranges(size, connections=connections, part_size=part_size)
    assert ranges[0].start == 0 and ranges[-1].stop == size
    assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
    lengths = [len(r) for r in ranges]
    assert max(lengths) - min(lengths) <= 1
    assert max(lengths) <= max(part_size, -(-size // len(ranges)))
    assert len(ranges) % connections == 0 or max(lengths) <= min(part_size, MIN_RANGE) * 2
    assert min(lengths) >= min(part_size, MIN_RANGE, size)


def test_empty_object_has_no_ranges() -> None:
    assert split_ranges(0, connections=4, part_size=10) == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),  # integer seconds, the normal case
        ("0", 0.0),
        (None, DEFAULT_RETRY_AFTER),  # missing
        ("soon", DEFAULT_RETRY_AFTER),  # garbage: no crash
        ("-5", 0.0),  # negative: clamped
        ("99999", 300.0),  # absurd: clamped to the DCS maximum
        ("nan", DEFAULT_RETRY_AFTER),
    ],
)
def test_retry_after_values(header: str | None, expected: float) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(42)


def _envelope(writer: bytes, *, magic: bytes = b"crypt4gh", version: int = 1, packets: int = 1):
    packet = (108).to_bytes(4, "little") + (0).to_bytes(4, "little") + writer + bytes(68)
    return magic + version.to_bytes(4, "little") + packets.to_bytes(4, "little") + packet


GHGA_KEY = bytes(range(32))


def test_envelope_from_ghga_is_accepted() -> None:
    envelope = _envelope(GHGA_KEY)
    assert len(envelope) == 124
    assert check_envelope(envelope, file_id="F") == envelope
    assert check_writer(envelope, GHGA_KEY, setting="GHGA_PUBLIC_KEY", file_id="F") == GHGA_KEY


def test_envelope_writer_is_recorded_when_no_key_was_given() -> None:
    # wps mode without ghga_public_key: GHGA does not publish its central key.
    other = bytes(range(1, 33))
    assert check_writer(_envelope(other), None, setting="ghga_public_key", file_id="F") == other


def test_envelope_from_another_writer_names_both_keys() -> None:
    forged = bytes(32)
    with pytest.raises(EnvelopeRejected) as raised:
        check_writer(_envelope(forged), GHGA_KEY, setting="GHGA_PUBLIC_KEY", file_id="F")
    message = str(raised.value)
    assert b64(forged) in message and b64(GHGA_KEY) in message and "GHGA_PUBLIC_KEY" in message
    assert raised.value.exit_code == 5


@pytest.mark.parametrize(
    ("envelope", "problem"),
    [
        (_envelope(GHGA_KEY, magic=b"crypt4gx"), "magic"),
        (_envelope(GHGA_KEY, version=2), "version 2"),
        (_envelope(GHGA_KEY, packets=2), "2 header packets"),
        (_envelope(GHGA_KEY)[:100], "packet length"),  # truncated
        (b"crypt4gh", "only 8 bytes"),
    ],
)
def test_bad_envelopes_are_rejected(envelope: bytes, problem: str) -> None:
    with pytest.raises(EnvelopeRejected, match=problem) as raised:
        check_envelope(envelope, file_id="F")
    assert raised.value.exit_code == 5


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(base64.b64encode(b"abc").decode()).encode(),  # JSON string (the DCS)
        base64.b64encode(b"abc"),  # bare base64 (older servers)
    ],
)
def test_envelope_body_forms(body: bytes) -> None:
    assert decode_envelope_body(body, file_id="F") == b"abc"


def test_plan_orders_staged_first_then_shortest_wait() -> None:
    specs = [FileSpec(f"F{i}", "") for i in range(6)]
    probes = [
        Staging(retry_after=30),
        Staged(size=10, url="u", sha256="s"),
        Unavailable(reason="gone"),
        Staging(retry_after=5),
        None,  # already downloaded
        Staged(size=20, url="u", sha256=None),
    ]
    entries = order_entries([classify(s, p) for s, p in zip(specs, probes, strict=True)])
    assert [e.file_id for e in entries] == ["F1", "F5", "F3", "F0", "F4", "F2"]
    assert [e.status for e in entries] == [
        Status.STAGED,
        Status.STAGED,
        Status.STAGING,
        Status.STAGING,
        Status.DOWNLOADED,
        Status.UNAVAILABLE,
    ]


def test_delivered_names_are_downloads_and_finished_files_in_plan_order() -> None:
    """What module consumers expand over (ghga_names): never skipped or unavailable files."""

    def entry(file_name: str, status: Status) -> PlanEntry:
        return PlanEntry("F", "", file_name, status, 0.0, -1, "")

    entries = [
        entry("F1.bam.c4gh", Status.STAGED),
        entry("F2.vcf.gz.c4gh", Status.DOWNLOADED),
        entry("F3.bam.c4gh", Status.UNAVAILABLE),
        entry("F4.bam.c4gh", Status.PRESENT),
        entry("F5.bam.c4gh", Status.STAGING),
        entry("F6.c4gh", Status.DOWNLOADED),
    ]
    assert delivered_names(entries) == ["F1.bam", "F2.vcf.gz", "F5.bam", "F6"]
    assert delivered_names(entries, ".bam") == ["F1", "F5"]
    assert delivered_names(entries, ".gz") == ["F2.vcf"]


def test_decrypted_dir_must_not_be_the_output_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="decrypted_dir: must not be output_dir"):
        Settings(output_dir=tmp_path / "d", decrypted_dir=tmp_path / "x/../d")


def test_plan_file_round_trips(tmp_path: Path) -> None:
    entries = [
        classify(FileSpec("007", ".bam"), Staged(size=3, url="u", sha256="ab")),
        classify(FileSpec("F2", ""), Staging(retry_after=4)),
    ]
    write_plan(entries, tmp_path / "ghga_plan.tsv")
    assert read_plan(tmp_path / "ghga_plan.tsv") == entries
    header = (tmp_path / "ghga_plan.tsv").read_text().splitlines()[0].split("\t")
    for column in ("file_id", "extension", "file_name", "status", "retry_after", "size"):
        assert column in header


def test_space_needed_counts_what_a_kept_part_already_holds(tmp_path: Path) -> None:
    """A resumed .part is not counted twice (it is continued, or freed when replaced)."""
    mib = 1024 * 1024
    big = PlanEntry("F1", ".bam", "F1.bam.c4gh", Status.STAGED, 0.0, 8 * mib, "")
    staging = PlanEntry("F2", "", "F2.c4gh", Status.STAGING, 4.0, -1, "")  # size unknown
    done = PlanEntry("F3", "", "F3.c4gh", Status.DOWNLOADED, 0.0, 8 * mib, "")
    entries = [big, staging, done]
    assert bytes_needed(entries, tmp_path) == 8 * mib + ENVELOPE_SIZE
    with (tmp_path / "F1.bam.c4gh.part").open("wb") as part:
        part.write(b"x" * (3 * mib))  # written, not sparse
    assert bytes_needed(entries, tmp_path) == 5 * mib + ENVELOPE_SIZE
    os.truncate(tmp_path / "F1.bam.c4gh.part", 8 * mib)  # sparse beyond: holds no more
    assert bytes_needed(entries, tmp_path) == 5 * mib + ENVELOPE_SIZE


def test_plan_written_before_retry_at_existed_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "ghga_plan.tsv"
    path.write_text(
        "file_id\textension\tfile_name\tstatus\tretry_after\tsize\tsha256\n"
        "F2\t\tF2.c4gh\tstaging\t4.0\t-1\t\n"
    )
    assert read_plan(path) == [PlanEntry("F2", "", "F2.c4gh", Status.STAGING, 4.0, -1, "")]


class StagingApi:
    """A Download API whose file is staged after ``staging_probes`` probes, each answered
    with ``retry_after``; records every pause the caller takes."""

    base_url = "http://dcs"

    def __init__(self, staging_probes: int, retry_after: float) -> None:
        self.left, self.retry_after = staging_probes, retry_after

    def probe_object(self, file_id: str) -> Staged | Staging:
        if self.left:
            self.left -= 1
            return Staging(retry_after=self.retry_after)
        return Staged(size=1, url="u", sha256=None)


@pytest.mark.parametrize(
    ("retry_at", "expected_pause"),
    [
        (1000.0 + 1.3, 1.3),  # the plan's probe promised 1.3 s from now: the rounded 2 s waits
        (0.0, 2.0),  # no promise: Retry-After
        (1000.0 - 5, 2.0),  # the promise has passed and it is still staging: Retry-After
    ],
)
def test_staging_wait_takes_the_plans_earlier_promise_never_an_earlier_time(
    retry_at: float, expected_pause: float
) -> None:
    pauses: list[float] = []
    staged, _waited = wait_until_staged(
        StagingApi(staging_probes=1, retry_after=2),  # type: ignore[arg-type]
        "F1", max_wait_time=60, retry_at=retry_at,
        clock=lambda: 0.0, wall_clock=lambda: 1000.0, sleep=pauses.append,
    )  # fmt: skip
    assert isinstance(staged, Staged)
    assert pauses == [pytest.approx(expected_pause)]


def test_damaged_plan_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ghga_plan.tsv").write_text("nonsense\n1\n")
    with pytest.raises(ConfigurationError, match="unreadable plan"):
        read_plan(tmp_path / "ghga_plan.tsv")


SCHEMA_TYPES = {"Path": "string", "str": "string", "bool": "boolean", "int": "integer"}
BOUNDS = ("enum", "minimum", "exclusiveMinimum")


def test_schema_and_settings_declare_the_same_keys_types_bounds_and_defaults() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["additionalProperties"] is False  # a typo'd key fails validation too
    fields = {spec.name: spec for spec in dataclasses.fields(Settings)}
    defaults = Settings().as_dict()
    assert set(schema["properties"]) == set(fields)
    for key, spec in schema["properties"].items():
        assert Settings.from_mapping({key: spec["default"]}).as_dict()[key] == defaults[key], key
        assert spec["type"] == SCHEMA_TYPES.get(str(fields[key].type), "number"), key
        declared = {bound: fields[key].metadata[bound] for bound in fields[key].metadata}
        in_schema = {bound: spec[bound] for bound in BOUNDS if bound in spec}
        assert {b: list(v) if b == "enum" else v for b, v in declared.items()} == in_schema, key


def test_a_setting_of_a_type_nobody_reads_is_our_own_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended(Settings):
        when: complex = 0j  # no converter for this

    with pytest.raises(ConfigurationError, match="unsupported type"):
        Extended.from_mapping({"when": "1"})


@pytest.mark.parametrize(
    ("key", "nearest"),
    [("skip_downloded", "skip_downloaded"), ("verfy", "verify"), ("conections", "connections")],
)
def test_unknown_config_key_names_the_nearest_one(key: str, nearest: str) -> None:
    with pytest.raises(ConfigurationError, match=f"unknown key '{key}'; did you mean {nearest}"):
        Settings.from_mapping({key: "true"}, source="config")


def test_config_file_sets_exactly_the_defaults() -> None:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert Settings.from_mapping(config) == Settings()
    assert set(config) == set(Settings().as_dict())


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("true", True), ("yes", True), ("1", True), ("false", False), ("No", False), (0, False)],
)
def test_booleans_as_users_type_them(typed: object, expected: bool) -> None:
    assert normalize_config({"skip_unavailable": typed}) == {"skip_unavailable": expected}


def test_numbers_typed_as_strings_become_numbers() -> None:
    # A module's nested config keeps --config values as strings.
    assert normalize_config({"connections": "2", "max_wait_time": "1.5"}) == {
        "connections": 2,
        "max_wait_time": 1.5,
    }
    assert normalize_config({"connections": "many"}) == {}  # left for the schema to name


def test_boolean_garbage_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match="skip_downloaded"):
        normalize_config({"skip_downloaded": "maybe"})


def test_core_never_imports_snakemake_or_click() -> None:
    code = (
        "import sys, pkgutil, importlib, ghga_tasks.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module(f'ghga_tasks.core.{m.name}')\n"
        "print(sorted(n for n in ('snakemake', 'click') if n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
