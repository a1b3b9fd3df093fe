"""Property-based tests: whatever a server, a user or a damaged file hands the parsers,
they answer with a value or with one of our own errors (which carry an exit code),
never with a crash; and whatever a name parser accepts is safe as a file name."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import re
import string
import tempfile
import threading
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ghga_tasks.core.api import (
    MAX_OBJECT_SIZE,
    MAX_RETRY_AFTER,
    LenientRetry,
    Staged,
    insecure_url_problem,
    parse_drs_object,
    parse_retry_after,
)
from ghga_tasks.core.envelope import check_envelope, decode_envelope_body
from ghga_tasks.core.errors import (
    ApiError,
    ConfigurationError,
    EnvelopeRejected,
)
from ghga_tasks.core.keys import parse_public_key
from ghga_tasks.core.plan import read_plan
from ghga_tasks.core.settings import Settings
from ghga_tasks.core.tokens import ClaimsError, parse_download_token, read_work_order_claims
from ghga_tasks.core.transfer import Prefix, split_ranges
from ghga_tasks.core.work_package import (
    FileSpec,
    safe_extension,
    typed_extension,
    validate_file_id,
    work_package_from_env,
)

# No per-example deadline: a loaded CI machine must not turn a slow example into a failure;
# these tests are about what the parsers answer, not how fast.
relaxed = settings(deadline=None)
KEY = bytes(range(32))
B64_KEY = base64.b64encode(KEY).decode()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
# Texts that look like what the parsers expect, so the search reaches the deep branches.
hexish = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=70)
sizes = st.integers() | st.just(MAX_OBJECT_SIZE) | st.just(MAX_OBJECT_SIZE + 1) | json_values
urls = st.text(max_size=40) | st.sampled_from(
    ["https://s3.example/o?sig=1", "http://127.0.0.1/x", ""]
)


def _drs_like() -> st.SearchStrategy[dict[str, Any]]:
    method = st.fixed_dictionaries(
        {"type": st.sampled_from(["s3", "https", ""]) | json_values},
        optional={"access_url": json_values | st.fixed_dictionaries({"url": urls | json_values})},
    )
    checksum = st.fixed_dictionaries(
        {"type": st.sampled_from(["sha-256", "md5"]) | json_values},
        optional={"checksum": hexish | json_values},
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "size": sizes,
            "access_methods": st.lists(method, max_size=3) | json_values,
            "checksums": st.lists(checksum, max_size=3) | json_values,
            "id": json_values,
        },
    )


@relaxed
@given(body=_drs_like() | json_values)
@example(body={"size": 10**5000, "access_methods": []})  # too long to print
@example(body={"size": 1, "access_methods": [{"type": "s3", "access_url": {"url": "x"}}],
               "checksums": 7})  # fmt: skip
def test_drs_object_parser_returns_staged_or_api_error(body: Any) -> None:
    try:
        staged = parse_drs_object(body, url="http://127.0.0.1/objects/F", file_id="F")
    except ApiError as error:
        assert error.exit_code == 1
        return
    assert isinstance(staged, Staged)
    assert isinstance(staged.size, int) and 0 <= staged.size <= MAX_OBJECT_SIZE
    assert isinstance(staged.url, str) and staged.url
    assert staged.sha256 is None or (len(staged.sha256) == 64 and staged.sha256.islower())


http_dates = st.datetimes(timezones=st.timezones()).map(lambda d: format_datetime(d))
retry_after_texts = st.none() | st.text(max_size=40) | http_dates | st.integers().map(str) | (
    st.floats(allow_nan=True, allow_infinity=True).map(str)
)  # fmt: skip


@relaxed
@given(value=retry_after_texts)
@example(value="Fri, 31 Dec 9999 23:59:59 GMT")
@example(value="1e400")
def test_retry_after_is_always_a_bounded_wait(value: str | None) -> None:
    seconds = parse_retry_after(value)
    assert 0.0 <= seconds <= MAX_RETRY_AFTER and not math.isnan(seconds)


@relaxed
@given(value=st.text(max_size=40) | http_dates | st.integers().map(str))
@example(value="99999999999999999999999999")
def test_transport_retry_after_is_always_a_bounded_wait(value: str) -> None:
    """The urllib3 side (429/503): garbage means the normal backoff, never an exception."""
    seconds = LenientRetry(total=1).parse_retry_after(value)
    assert 0.0 <= seconds <= MAX_RETRY_AFTER


@relaxed
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | (
    st.binary(max_size=200).map(lambda raw: json.dumps(base64.b64encode(raw).decode()).encode())
))  # fmt: skip
def test_envelope_body_decodes_or_is_rejected(body: bytes) -> None:
    try:
        envelope = decode_envelope_body(body, file_id="F")
    except EnvelopeRejected as error:
        assert error.exit_code == 5
        return
    assert isinstance(envelope, bytes)


def _envelope_like() -> st.SearchStrategy[bytes]:
    """Header-shaped bytes with each field fuzzed, GHGA's key as writer most of the time."""
    return st.builds(
        lambda magic, version, count, length, method, writer, rest: (
            magic + version.to_bytes(4, "little") + count.to_bytes(4, "little")
            + length.to_bytes(4, "little") + method.to_bytes(4, "little") + writer + rest
        ),
        st.sampled_from([b"crypt4gh", b"crypt4gx"]),
        st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1), st.sampled_from([KEY, bytes(32)]), st.binary(max_size=120),
    )  # fmt: skip


@relaxed
@given(envelope=_envelope_like() | st.binary(max_size=200))
def test_envelope_check_accepts_or_rejects(envelope: bytes) -> None:
    try:
        assert check_envelope(envelope, file_id="F") == envelope
    except EnvelopeRejected as error:
        assert error.exit_code == 5


ENV_NAMES = [
    "GHGA_DOWNLOAD_API_URL",
    "GHGA_FILE_IDS",
    "GHGA_FILE_EXTENSIONS",
    "GHGA_USER_ID",
    "GHGA_USER_PUBLIC_KEY",
    "GHGA_PUBLIC_KEY",
    "GHGA_WORK_ORDER_TOKEN",
]
GOOD_ENV = {
    "GHGA_DOWNLOAD_API_URL": "http://127.0.0.1:8080/ga4gh/drs/v1",
    "GHGA_FILE_IDS": "GHGAF1,GHGAF2",
    "GHGA_FILE_EXTENSIONS": ".bam,",
    "GHGA_USER_ID": "u",
    "GHGA_USER_PUBLIC_KEY": B64_KEY,
    "GHGA_PUBLIC_KEY": B64_KEY,
}
id_lists = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + "._-/\\:\x00 ..", max_size=12),
    max_size=4,
).map(",".join)


@relaxed
@given(
    changes=st.dictionaries(
        st.sampled_from(ENV_NAMES), st.text(max_size=60) | id_lists | st.just(B64_KEY)
    ),
    removed=st.sets(st.sampled_from(ENV_NAMES)),
)
def test_env_work_package_is_valid_or_a_configuration_error(changes, removed) -> None:
    env = {k: v for k, v in {**GOOD_ENV, **changes}.items() if k not in removed}
    try:
        package = work_package_from_env(env)
    except ConfigurationError as error:
        assert error.exit_code == 2 and error.setting
        return
    for spec in package.files:
        assert_safe_file_name(spec.file_name)


def assert_safe_file_name(name: str) -> None:
    """A name that stays inside the output directory, whatever it is joined to."""
    root = Path("/downloads")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith((".", "-")) and ".." not in name
    assert len(name.encode()) <= 255
    assert (root / name).parent == root


@relaxed
@given(file_id=st.text(max_size=200), extension=st.text(max_size=80))
@example(file_id="GHGAF1\x00", extension=".bam")
@example(file_id="GHGAF1", extension=".bam/../../x")
@example(file_id="GHGAF1.", extension=".bam.")
def test_names_are_safe_or_the_id_is_refused(file_id: str, extension: str) -> None:
    # Only the ID can be refused; any extension a user types gets a safe name.
    try:
        spec = FileSpec(validate_file_id(file_id, setting="id"), typed_extension(extension))
    except ConfigurationError as error:
        assert error.exit_code == 2
        return
    assert_safe_file_name(spec.part_name)


@relaxed
@given(extension=st.text(max_size=300))
@example(extension=".0 final")
@example(extension=".ÄÖ")
@example(extension="..")
@example(extension="." + "x" * 400)
def test_any_archive_extension_maps_to_a_safe_stable_name(extension: str) -> None:
    # GHGA derives extensions from submitted file names: any Unicode can arrive.
    spec = FileSpec("GHGAF00000000000001", extension)
    assert_safe_file_name(spec.part_name)
    assert re.fullmatch(r"GHGAF00000000000001[A-Za-z0-9._+-]*\.c4gh", spec.file_name)
    assert safe_extension(extension) == safe_extension(extension)  # deterministic
    assert safe_extension(safe_extension(extension)) == safe_extension(extension)  # stable


@pytest.mark.parametrize(
    ("extension", "safe"),
    [
        (".bam", ".bam"),  # ordinary extensions are untouched
        (".tar.gz", ".tar.gz"),
        ("", ""),  # no extension: <id>.c4gh
        (".0 final", ".0_final"),  # GHGA's suffix of "Report v1.0 final"
        (".äö", ".__"),  # non-ASCII letters
        (".a(1)", ".a_1_"),  # brackets
        ("..", "._"),  # never ".." in a name
    ],
)
def test_safe_extension_examples(extension: str, safe: str) -> None:
    assert safe_extension(extension) == safe


PLAN_HEADER = "file_id\textension\tfile_name\tstatus\tretry_after\tsize\tsha256\n"
plan_fields = st.text(max_size=20) | st.sampled_from(
    ["staged", "GHGAF1", ".bam", "GHGAF1.bam.c4gh"]
)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150, deadline=None
)
@given(
    content=st.binary(max_size=300)
    | st.lists(st.lists(plan_fields, min_size=7, max_size=7).map("\t".join), max_size=3).map(
        lambda rows: (PLAN_HEADER + "\n".join(rows)).encode(errors="surrogatepass")
    )
)
@example(content=(PLAN_HEADER + "../x\t\t../x.c4gh\tstaged\t0\t1\t\n").encode())
@example(content=(PLAN_HEADER + "GHGAF1\t.bam\tother.c4gh\tstaged\t0\t1\t\n").encode())
@example(content=(PLAN_HEADER + "GHGAF1\x00\t\tGHGAF1\x00.c4gh\tstaged\t0\t1\t\n").encode())
def test_plan_file_reads_or_is_a_configuration_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ghga_plan.tsv"
        path.write_bytes(content)
        try:
            entries = read_plan(path)
        except ConfigurationError as error:
            assert error.exit_code == 2
            return
    for entry in entries:
        assert_safe_file_name(entry.file_name)


@relaxed
@given(text=st.text(max_size=140) | st.builds(
    lambda a, b: f"{a}:{b}", st.uuids().map(str) | st.text(max_size=40), st.text(max_size=120)
))  # fmt: skip
def test_download_token_parses_or_is_a_configuration_error(text: str) -> None:
    try:
        parse_download_token(text, source="GHGA_DOWNLOAD_TOKEN")
    except ConfigurationError as error:
        assert error.exit_code == 2


def _jwt(claims: Any) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


claims = st.fixed_dictionaries(
    {},
    optional={
        "user_public_crypt4gh_key": st.just(B64_KEY) | json_values,
        "accession": json_values,
        "iat": st.integers() | st.floats() | json_values,
        "exp": st.integers() | st.floats() | json_values,
    },
)


@relaxed
@given(token=st.text(max_size=80) | claims.map(_jwt) | json_values.map(_jwt))
@example(token=_jwt({"user_public_crypt4gh_key": B64_KEY, "iat": 10**400, "exp": 1}))
def test_work_order_token_claims_read_or_raise_claims_error(token: str) -> None:
    with contextlib.suppress(ClaimsError):
        read_work_order_claims(token)


@relaxed
@given(
    text=st.text(max_size=120) | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
)
def test_public_key_text_parses_or_is_a_configuration_error(text: str) -> None:
    try:
        assert len(parse_public_key(text, setting="GHGA_PUBLIC_KEY")) == 32
    except ConfigurationError as error:
        assert error.exit_code == 2


@relaxed
@given(values=st.dictionaries(st.sampled_from(list(Settings.__dataclass_fields__)), json_values))
@example(values={"part_size": math.inf})  # int(inf) overflows
@example(values={"max_wait_time": math.nan})  # a deadline nothing ever reaches
@example(values={"read_timeout": "nan"})
def test_settings_from_any_config_are_valid_or_a_configuration_error(values) -> None:
    try:
        settings = Settings.from_mapping(values)
    except ConfigurationError as error:
        assert error.exit_code == 2
        return
    for name in ("max_wait_time", "connect_timeout", "read_timeout"):
        assert 0 < getattr(settings, name) < math.inf


@relaxed
@given(url=st.text(max_size=60) | st.builds(lambda s, h: f"{s}://{h}/x",
       st.sampled_from(["http", "https", "ftp", ""]), st.text(max_size=20)),
       allow_http=st.booleans())  # fmt: skip
def test_url_policy_answers_for_any_text(url: str, allow_http: bool) -> None:
    assert isinstance(insecure_url_problem(url, allow_http=allow_http), str)


# --- the transfer's bookkeeping ---------------------------------------------------------------


@relaxed
@given(
    size=st.integers(0, 10**15),
    connections=st.integers(1, 16),
    part_size=st.integers(1, 10**9),
)
def test_ranges_cover_any_object_exactly(size: int, connections: int, part_size: int) -> None:
    ranges = split_ranges(size, connections=connections, part_size=part_size, max_ranges=500)
    assert sum(len(r) for r in ranges) == size
    assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
    assert len(ranges) <= 500 + connections  # bounded, whatever part_size asks for


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(1, 400), connections=st.integers(1, 6))
def test_prefix_is_the_contiguous_written_head_in_any_write_order(data, size, connections):
    """Ranges land out of order; the follower may read exactly the bytes written from 0."""
    ranges = split_ranges(size, connections=connections, part_size=max(1, size // 5))
    prefix = Prefix(ranges, threading.Event())
    written = [0] * len(ranges)
    on_disk = bytearray(size)
    while any(w < len(r) for w, r in zip(written, ranges, strict=True)):
        open_ranges = [i for i, r in enumerate(ranges) if written[i] < len(r)]
        index = data.draw(st.sampled_from(open_ranges))
        chunk = data.draw(st.integers(1, len(ranges[index]) - written[index]))
        start = ranges[index].start + written[index]
        on_disk[start : start + chunk] = b"x" * chunk
        written[index] += chunk
        prefix.add(index, chunk)
        head = on_disk.find(0)
        assert prefix.value == (size if head == -1 else head)
    assert prefix.wait_beyond(size - 1) == size
