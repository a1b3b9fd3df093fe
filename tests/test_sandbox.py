"""The GHGA sandbox speaks the Download Controller and outbox protocol byte-exactly.

Every test talks real HTTP to a sandbox on loopback and checks what a client would see
(status, headers, bytes), with real Crypt4GH on both ends. Most use ``sandbox_factory``,
which also serves env-mode clients and answers staging quickly; the "Production
behaviour" tests build sandboxes with every default, as strict as GHGA.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from crypt4gh.lib import decrypt
from nacl.public import PrivateKey, SealedBox
from sandbox_fixtures import SandboxFactory, UserKeys

from ghga_tasks.sandbox import (
    DEFAULT_FILES,
    ENVELOPE_SIZE,
    Faults,
    Sandbox,
    SandboxFile,
    encrypted_size,
    format_env,
    parse_file_specs,
    parse_size,
    serve,
)
from ghga_tasks.sandbox.archive import Archive
from ghga_tasks.sandbox.service_errors import uuid4_or_error
from ghga_tasks.sandbox.wps import WorkOrderSigner

BAM = SandboxFile("GHGAF00000000000001", ".bam", 200_000)
FASTQ = SandboxFile("GHGAF00000000000002", ".fastq.gz", 65_536)
BARE = SandboxFile("GHGAF00000000000003", "", 1_000)
EMPTY = SandboxFile("GHGAF00000000000004", ".txt", 0)
GONE = SandboxFile("GHGAF00000000000005", ".bam", 10_000, available=False)
SMALL_BATCH = (BAM, FASTQ, BARE, EMPTY, GONE)


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory(SMALL_BATCH)


def object_url(http: requests.Session, sandbox: Sandbox, file_id: str) -> str:
    """The presigned URL from the DRS object, as a client gets it."""
    response = http.get(f"{sandbox.dcs_url}/objects/{file_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["access_methods"][0]["access_url"]["url"])


def object_bytes(sandbox: Sandbox, file_id: str) -> bytes:
    return sandbox.object_path(file_id).read_bytes()


def raw_get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """GET over a bare socket, reading until the server closes: shows truncation as is."""
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, body


# --- Download Controller ------------------------------------------------------------------


def test_health_answers_ok(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.get(f"{sandbox.dcs_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}


def test_sandbox_binds_loopback_only(sandbox: Sandbox) -> None:
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}"
    assert sandbox.dcs_url == f"{sandbox.base_url}/ga4gh/drs/v1"


def test_drs_object_has_the_dcs_shape(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.get(f"{sandbox.dcs_url}/objects/{BAM.file_id}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=30, private"
    body = response.json()
    assert set(body) == {"id", "self_uri", "size", "created_time", "checksums", "access_methods"}
    assert body["id"] == BAM.file_id
    assert body["self_uri"] == f"drs://127.0.0.1:{sandbox.port}/{BAM.file_id}"
    assert body["size"] == encrypted_size(BAM.size) == sandbox.encrypted_size(BAM.file_id)
    assert body["checksums"] == [{"checksum": sandbox.checksum(BAM.file_id), "type": "sha-256"}]
    [method] = body["access_methods"]
    assert method["type"] == "s3"
    url = method["access_url"]["url"]
    assert re.fullmatch(
        rf"{sandbox.base_url}/s3/outbox/[0-9a-f-]{{36}}\?expires=[\d.]+&signature=[0-9a-f]{{64}}",
        url,
    )
    assert BAM.file_id not in url  # the outbox knows objects by UUID, not by accession


def test_staging_file_answers_202_then_200(
    sandbox_factory: SandboxFactory, http: requests.Session
) -> None:
    staging = SandboxFile("GHGAF00000000000010", ".bam", 1_000, stage_seconds=1)
    sandbox = sandbox_factory([staging])
    url = f"{sandbox.dcs_url}/objects/{staging.file_id}"
    first = http.get(url)
    assert first.status_code == 202
    assert first.json() is None
    assert first.headers["Retry-After"] == "1"
    assert first.headers["Cache-Control"] == "no-store"
    time.sleep(1.05)
    assert http.get(url).status_code == 200


def test_never_staged_file_keeps_answering_202_with_the_same_estimate(
    sandbox_factory: SandboxFactory, http: requests.Session
) -> None:
    stuck = SandboxFile("GHGAF00000000000011", "", 1_000, stage_seconds=math.inf)
    sandbox = sandbox_factory([stuck], retry_after_min=3)
    for _ in range(3):
        response = http.get(f"{sandbox.dcs_url}/objects/{stuck.file_id}")
        assert (response.status_code, response.headers["Retry-After"]) == (202, "3")


def test_staging_object_is_not_in_the_outbox_yet(
    sandbox_factory: SandboxFactory, http: requests.Session
) -> None:
    staging = SandboxFile("GHGAF00000000000012", "", 1_000, stage_seconds=30)
    sandbox = sandbox_factory([staging])
    assert http.get(sandbox.presigned_url(staging.file_id)).status_code == 404


@pytest.mark.parametrize(
    "file_id",
    [
        GONE.file_id,  # listed in the work package, not in the archive
        "GHGAF99999999999999",  # unknown accession
    ],
)
@pytest.mark.parametrize("suffix", ["", "/envelopes"])
def test_unavailable_files_answer_no_such_object(
    sandbox: Sandbox, http: requests.Session, file_id: str, suffix: str
) -> None:
    response = http.get(f"{sandbox.dcs_url}/objects/{file_id}{suffix}")
    assert response.status_code == 404
    assert response.json() == {
        "exception_id": "noSuchObject",
        "description": "The requested DrsObject wasn't found",
        "data": {"object_id": file_id},
    }


def test_env_clients_need_no_work_order_token(sandbox: Sandbox, http: requests.Session) -> None:
    url = f"{sandbox.dcs_url}/objects/{BAM.file_id}"
    assert http.get(url, headers={"Authorization": "Bearer anything"}).status_code == 200
    assert http.get(url).status_code == 200
    # A JWT-shaped bearer is a work order token, checked as strictly as without env clients.
    assert http.get(url, headers={"Authorization": "Bearer a.b.c"}).status_code == 401
    assert [record.bearer for record in sandbox.requests] == [True, False, True]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/ga4gh/drs/v1/objects/GHGAF00000000000001", 405),  # known path, wrong verb
        ("GET", "/ga4gh/drs/v1/nothing", 404),  # no such route
    ],
)
def test_unknown_routes_answer_like_fastapi(
    sandbox: Sandbox, http: requests.Session, method: str, path: str, status: int
) -> None:
    response = http.request(method, f"{sandbox.base_url}{path}")
    assert response.status_code == status
    assert "detail" in response.json()


# --- Production behaviour: what a sandbox with every default does, as GHGA does --------------

STAGING = SandboxFile("GHGAF00000000000030", ".bam", 1_000, stage_seconds=1)
PRODUCTION_BATCH = (BAM, BARE, STAGING)
NOT_AUTHENTICATED = {"detail": "Not authenticated"}
INVALID_CREDENTIALS = {"detail": "Invalid authentication credentials"}


@pytest.fixture
def production(user_keys: UserKeys, tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox built with nothing but files and the user key: the defaults."""
    files, key = PRODUCTION_BATCH, user_keys.public_key
    with Sandbox(files=files, user_public_key=key, workdir=tmp_path / "prod") as sandbox:
        yield sandbox


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unseal(sealed: str, secret_key: bytes) -> str:
    return SealedBox(PrivateKey(secret_key)).decrypt(base64.b64decode(sealed)).decode()


def package_url(sandbox: Sandbox, package_id: str) -> str:
    return f"{sandbox.base_url}/wps/work-packages/{package_id}"


def access_token(sandbox: Sandbox, secret_key: bytes) -> tuple[str, str]:
    """The work package ID and plaintext access token from the sandbox's download token."""
    package_id, _, sealed = sandbox.download_token.partition(":")
    return package_id, unseal(sealed, secret_key)


def work_order_token(
    http: requests.Session, sandbox: Sandbox, secret_key: bytes, accession: str
) -> str:
    """A work order token from the WPS, as a client gets one."""
    package_id, token = access_token(sandbox, secret_key)
    answer = http.post(
        f"{package_url(sandbox, package_id)}/files/{accession}/work-order-tokens",
        headers=bearer(token),
    )
    assert answer.status_code == 201, answer.text
    return unseal(answer.json(), secret_key)


def drs_get(
    http: requests.Session, sandbox: Sandbox, accession: str, token: str, suffix: str = ""
) -> requests.Response:
    return http.get(f"{sandbox.dcs_url}/objects/{accession}{suffix}", headers=bearer(token))


def test_envelopes_are_written_with_a_central_key_the_wkvs_does_not_publish(
    production: Sandbox, http: requests.Session, user_keys: UserKeys
) -> None:
    values = http.get(f"{production.wkvs_url}/values").json()
    published = {
        alias: base64.b64decode(key) for alias, key in values["crypt4gh_public_keys"].items()
    }
    assert {"HD01", "TUE01"} <= set(published)  # one key per data hub
    assert published == production.hub_public_keys
    assert len(set(published.values())) == len(published)
    assert set(values["storage_aliases"]) == set(values["storage_labels"]) == set(published)

    wot = work_order_token(http, production, user_keys.secret_key, BAM.file_id)
    answer = drs_get(http, production, BAM.file_id, wot, "/envelopes")
    assert answer.status_code == 200
    envelope = base64.b64decode(answer.json())
    writer = envelope[24:56]  # magic, version, packet count, packet length, method
    assert writer == production.ghga_public_key
    assert writer not in published.values()
    assert production.env()["GHGA_PUBLIC_KEY"] == base64.b64encode(writer).decode()
    content = http.get(object_url_with(http, production, BAM.file_id, wot)).content
    plain = io.BytesIO()
    decrypt([(0, user_keys.secret_key, None)], io.BytesIO(envelope + content), plain)
    assert plain.getvalue() == production.plaintext_path(BAM.file_id).read_bytes()


def object_url_with(http: requests.Session, sandbox: Sandbox, accession: str, wot: str) -> str:
    answer = drs_get(http, sandbox, accession, wot)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_methods"][0]["access_url"]["url"])


def test_drs_object_is_sent_without_a_content_type(
    production: Sandbox, http: requests.Session, user_keys: UserKeys
) -> None:
    wot = work_order_token(http, production, user_keys.secret_key, BAM.file_id)
    answer = drs_get(http, production, BAM.file_id, wot)
    assert answer.status_code == 200
    assert "Content-Type" not in answer.headers  # the DCS builds it without a media type
    assert answer.headers["Cache-Control"] == "max-age=30, private"
    assert answer.content.startswith(b'{"access_methods":[{"access_url":{"url":"http')
    assert answer.json()["id"] == BAM.file_id
    health = http.get(f"{production.dcs_url}/health")  # /health stays FastAPI's JSON
    assert (health.status_code, health.json()) == (200, {"status": "OK"})
    assert health.headers["Content-Type"] == "application/json"


def test_staging_answers_the_dcs_estimate_on_every_probe(
    production: Sandbox, http: requests.Session, user_keys: UserKeys
) -> None:
    wot = work_order_token(http, production, user_keys.secret_key, STAGING.file_id)
    started = time.monotonic()
    answers = [drs_get(http, production, STAGING.file_id, wot) for _ in range(3)]
    for answer in answers:
        assert answer.status_code == 202
        assert answer.content == b"null"
        assert answer.headers["Retry-After"] == "5"  # 1 kB at 100 MB/s, clamped up to 5 s
        assert answer.headers["Cache-Control"] == "no-store"
    # The file itself is staged after its own 1 s, whatever the estimate said.
    time.sleep(max(0.0, started + STAGING.stage_seconds + 0.05 - time.monotonic()))
    assert drs_get(http, production, STAGING.file_id, wot).status_code == 200


@pytest.mark.parametrize(
    ("size", "retry_after"),
    [
        (6_500_000, "6"),  # 6.5 s at 1 MB/s: Python's round, half to even, as the DCS
        (7_500_000, "8"),
    ],
)
def test_retry_after_is_the_size_at_the_staging_speed(
    sandbox_factory: SandboxFactory, http: requests.Session, size: int, retry_after: str
) -> None:
    big = SandboxFile("GHGAF00000000000031", ".bam", size, stage_seconds=math.inf)
    sandbox = sandbox_factory([big], staging_speed=1)
    answer = http.get(f"{sandbox.dcs_url}/objects/{big.file_id}")
    assert (answer.status_code, answer.headers["Retry-After"]) == (202, retry_after)


@pytest.mark.parametrize(
    ("size", "seconds"),
    [
        (1, 5),  # nothing to stage still waits retry_after_min
        (549_999_999, 5),
        (650_000_000, 6),  # 6.5 s: half to even
        (750_000_000, 8),
        (40 * 10**9, 300),  # 400 s, clamped to retry_after_max
    ],
)
def test_default_staging_estimate_is_clamped_to_5_and_300(
    tmp_path: Path, size: int, seconds: int
) -> None:
    spec = SandboxFile("GHGAF00000000000032", size=size, available=False)  # nothing generated
    assert Archive([spec], tmp_path).estimated_staging_seconds(spec.file_id) == seconds


@pytest.mark.parametrize("suffix", ["", "/envelopes"])
@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "bearer"],
    ids=["none", "basic", "bearer-without-token", "lower-case-without-token"],
)
def test_drs_requests_without_a_bearer_token_are_not_authenticated(
    production: Sandbox, http: requests.Session, suffix: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = http.get(f"{production.dcs_url}/objects/{BAM.file_id}{suffix}", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == NOT_AUTHENTICATED
    assert answer.headers["WWW-Authenticate"] == "Bearer"  # FastAPI's HTTPBearer challenge


def forged_tokens(sandbox: Sandbox) -> dict[str, str]:
    """Bearer tokens the DCS must refuse: not JWTs, not the WPS's, not for download."""
    claims = {
        "work_type": "download",
        "file_id": str(uuid.uuid4()),
        "accession": BAM.file_id,
        "user_public_crypt4gh_key": base64.b64encode(sandbox.user_public_key).decode(),
        "iat": int(time.time()),
        "exp": int(time.time()) + 30,
    }
    return {
        "garbage": "garbage",
        "jwt-shaped": "a.b.c",
        "other-signer": WorkOrderSigner().sign(claims),
        "upload-work": sandbox.work_packages.signer.sign({**claims, "work_type": "upload"}),
        "no-accession": sandbox.work_packages.signer.sign(
            {k: v for k, v in claims.items() if k != "accession"}
        ),
        "bad-key": sandbox.work_packages.signer.sign({**claims, "user_public_crypt4gh_key": "x"}),
    }


@pytest.mark.parametrize("suffix", ["", "/envelopes"])
@pytest.mark.parametrize(
    "kind", ["garbage", "jwt-shaped", "other-signer", "upload-work", "no-accession", "bad-key"]
)
def test_invalid_work_order_tokens_are_refused_without_a_challenge(
    production: Sandbox, http: requests.Session, kind: str, suffix: str
) -> None:
    token = forged_tokens(production)[kind]
    answer = drs_get(http, production, BAM.file_id, token, suffix)
    assert answer.status_code == 401
    assert answer.json() == INVALID_CREDENTIALS
    assert "WWW-Authenticate" not in answer.headers


@pytest.mark.parametrize(
    ("expired_for", "status"),
    [
        (30, 200),  # within the DCS's 60 s leeway
        (90, 401),  # beyond it
    ],
)
def test_work_order_tokens_are_accepted_for_60_seconds_after_they_expire(
    production: Sandbox, http: requests.Session, user_keys: UserKeys, expired_for: int, status: int
) -> None:
    production.work_packages.expire_next_work_order_tokens(1, expired_for=expired_for)
    wot = work_order_token(http, production, user_keys.secret_key, BAM.file_id)
    claims = json.loads(base64.urlsafe_b64decode(wot.split(".")[1] + "=="))
    assert time.time() - claims["exp"] == pytest.approx(expired_for, abs=2)
    assert drs_get(http, production, BAM.file_id, wot).status_code == status


@pytest.mark.parametrize("suffix", ["", "/envelopes"])
def test_a_token_for_another_file_is_forbidden(
    production: Sandbox, http: requests.Session, user_keys: UserKeys, suffix: str
) -> None:
    wot = work_order_token(http, production, user_keys.secret_key, BARE.file_id)
    answer = drs_get(http, production, BAM.file_id, wot, suffix)
    assert answer.status_code == 403
    assert answer.json() == {
        "exception_id": "wrongFileAuthorizationError",
        "description": "Endpoint file ID did not match file ID announced in work order token.",
        "data": {},
    }


def _unknown_package(sandbox: Sandbox, token: str) -> tuple[str, str]:
    return str(uuid.uuid4()), token


def _wrong_access_token(sandbox: Sandbox, token: str) -> tuple[str, str]:
    return sandbox.work_package.work_package_id, "A" * 24


def _expired_package(sandbox: Sandbox, token: str) -> tuple[str, str]:
    files = {BAM.file_id: ".bam"}
    minted = sandbox.work_packages.mint(files, sandbox.user_public_key, valid_seconds=-1)
    return minted.work_package_id, minted.access_token


def _revoked_package(sandbox: Sandbox, token: str) -> tuple[str, str]:
    sandbox.work_packages.revoke(sandbox.work_package.work_package_id)
    return sandbox.work_package.work_package_id, token


def _upload_package(sandbox: Sandbox, token: str) -> tuple[str, str]:
    minted = sandbox.work_packages.mint_upload(sandbox.user_public_key)
    return minted.work_package_id, minted.access_token


def _unavailable_file(sandbox: Sandbox, token: str) -> tuple[str, str]:
    sandbox.work_packages.make_unavailable(BAM.file_id)
    return sandbox.work_package.work_package_id, token


def _file_not_in_package(sandbox: Sandbox, token: str) -> tuple[str, str]:
    sandbox.work_packages.withdraw_file(sandbox.work_package.work_package_id, BAM.file_id)
    return sandbox.work_package.work_package_id, token


PACKAGE_REFUSALS = [
    (_unknown_package, "Work package not found"),
    (_wrong_access_token, "Invalid work package access token"),
    (_expired_package, "Work package has expired"),
    (_revoked_package, "Download access has been revoked"),
]
WORK_ORDER_REFUSALS = [
    *PACKAGE_REFUSALS,
    (_upload_package, "Work package type must be DOWNLOAD to obtain a download access WOT"),
    (_file_not_in_package, "File is not contained in work package"),
    (_unavailable_file, "File not available for download"),
]


@pytest.mark.parametrize(("arrange", "detail"), WORK_ORDER_REFUSALS)
def test_wps_refuses_work_order_tokens_as_ghga_does(
    production: Sandbox, http: requests.Session, user_keys: UserKeys, arrange, detail: str
) -> None:
    package_id, token = arrange(production, access_token(production, user_keys.secret_key)[1])
    answer = http.post(
        f"{package_url(production, package_id)}/files/{BAM.file_id}/work-order-tokens",
        headers=bearer(token),
    )
    assert answer.status_code == 403
    assert answer.json() == {"detail": detail}
    assert not production.requests.matching(path_prefix="/ga4gh")  # the DCS never asked


@pytest.mark.parametrize(("arrange", "detail"), PACKAGE_REFUSALS)
def test_wps_refuses_work_packages_as_ghga_does(
    production: Sandbox, http: requests.Session, user_keys: UserKeys, arrange, detail: str
) -> None:
    package_id, token = arrange(production, access_token(production, user_keys.secret_key)[1])
    answer = http.get(package_url(production, package_id), headers=bearer(token))
    assert (answer.status_code, answer.json()) == (403, {"detail": detail})


def test_unavailable_file_is_still_listed_and_other_files_still_download(
    production: Sandbox, http: requests.Session, user_keys: UserKeys
) -> None:
    production.work_packages.make_unavailable(BAM.file_id)
    package_id, token = access_token(production, user_keys.secret_key)
    details = http.get(package_url(production, package_id), headers=bearer(token)).json()
    assert BAM.file_id in details["files"]
    wot = work_order_token(http, production, user_keys.secret_key, BARE.file_id)
    assert drs_get(http, production, BARE.file_id, wot).status_code == 200


def test_upload_package_is_shown_as_one(production: Sandbox, http: requests.Session) -> None:
    minted = production.work_packages.mint_upload(production.user_public_key)
    answer = http.get(
        package_url(production, minted.work_package_id), headers=bearer(minted.access_token)
    )
    assert answer.status_code == 200
    details = answer.json()
    assert (details["type"], details["files"]) == ("upload", {})
    assert uuid.UUID(details["research_data_upload_box_id"]).version == 4
    assert uuid.UUID(details["file_upload_box_id"]).version == 4


@pytest.mark.parametrize("suffix", ["", "/files/GHGAF00000000000001/work-order-tokens"])
def test_wps_wants_a_bearer_token(production: Sandbox, http: requests.Session, suffix) -> None:
    url = package_url(production, production.work_package.work_package_id) + suffix
    answer = http.request("POST" if suffix else "GET", url)
    assert (answer.status_code, answer.json()) == (401, NOT_AUTHENTICATED)
    assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("package_id", "error"),
    [
        (
            "not-a-uuid",
            {
                "type": "uuid_parsing",
                "loc": ["path", "work_package_id"],
                "msg": "Input should be a valid UUID, invalid character: found `n` at 0",
                "input": "not-a-uuid",
                "ctx": {"error": "invalid character: found `n` at 0"},
            },
        ),
        (
            "6f0c6a4e-2f4b-1c55-9a37-9d1f3a0c1e55",  # a UUID, but version 1
            {
                "type": "uuid_version",
                "loc": ["path", "work_package_id"],
                "msg": "UUID version 4 expected",
                "input": "6f0c6a4e-2f4b-1c55-9a37-9d1f3a0c1e55",
                "ctx": {"expected_version": 4},
            },
        ),
    ],
)
@pytest.mark.parametrize("suffix", ["", "/files/GHGAF00000000000001/work-order-tokens"])
def test_wps_answers_422_for_a_work_package_id_that_is_no_uuid4(
    production: Sandbox, http: requests.Session, package_id: str, error: dict, suffix: str
) -> None:
    url = package_url(production, package_id) + suffix
    answer = http.request("POST" if suffix else "GET", url, headers=bearer("A" * 24))
    assert answer.status_code == 422
    assert answer.json() == {"detail": [error]}


def test_uuid4_errors_read_as_pydantic_writes_them() -> None:
    """Cross-check with pydantic itself, where it is installed (GHGA's FastAPI uses it)."""
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(pydantic.UUID4)
    candidates = [
        "", "abc", "a" * 31, "a" * 32, "a" * 36, "ab-cd", "a-b-c-d-e", "ééé", " " + "a" * 32,
        "{6f0c6a4e-2f4b-4c55-9a37-9d1f3a0c1e5x}", "urn:uuid:6f0c6a4e-2f4b-4c55-9a37-9d1f3a0c1e55",
        "6F0C6A4E-2F4B-4C55-9A37-9D1F3A0C1E55", "6f0c6a4e2f4b4c559a379d1f3a0c1e55",
        "6f0c6a4e-2f4b-4c55-ca37-9d1f3a0c1e55", "6f0c6a4e-2f4b-4c55-9a37-9d1f3a0c1e5",
        "6f0c6a4e--2f4b-4c55-9a37-9d1f3a0c1e5", "00000000-0000-0000-0000-000000000000",
    ]  # fmt: skip
    for candidate in candidates:
        try:
            expected = str(adapter.validate_python(candidate))
        except pydantic.ValidationError as failure:
            error = failure.errors(include_url=False)[0]
            expected = (error["type"], error["msg"], error["ctx"])
        answer = uuid4_or_error(candidate, "work_package_id")
        if isinstance(answer, uuid.UUID):
            assert str(answer) == expected, candidate
        else:
            [ours] = json.loads(b"".join(answer.body))["detail"]
            assert (ours["type"], ours["msg"], ours["ctx"]) == expected, candidate


# --- Envelope and Crypt4GH ------------------------------------------------------------------


@pytest.mark.parametrize("spec", [BAM, FASTQ, BARE, EMPTY], ids=lambda spec: spec.file_id)
def test_envelope_and_object_decrypt_to_the_plaintext(
    sandbox: Sandbox, http: requests.Session, user_keys: UserKeys, spec: SandboxFile
) -> None:
    response = http.get(f"{sandbox.dcs_url}/objects/{spec.file_id}/envelopes")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    envelope = base64.b64decode(response.json(), validate=True)
    assert len(envelope) == ENVELOPE_SIZE == 124
    assert envelope.startswith(b"crypt4gh")

    content = http.get(object_url(http, sandbox, spec.file_id)).content
    decrypted = io.BytesIO()
    decrypt([(0, user_keys.secret_key, None)], io.BytesIO(envelope + content), decrypted)

    plaintext = sandbox.plaintext_path(spec.file_id).read_bytes()
    assert decrypted.getvalue() == plaintext
    assert len(plaintext) == spec.size
    assert hashlib.sha256(plaintext).hexdigest() == sandbox.checksum(spec.file_id)


@pytest.mark.parametrize(
    ("plaintext_size", "expected"),
    [
        (0, 0),  # nothing to encrypt
        (1, 29),  # one short segment: 12 nonce + 1 + 16 tag
        (65_535, 65_563),
        (65_536, 65_564),  # exactly one full segment
        (65_537, 65_564 + 29),
        (200_000, 200_112),  # the protocol's observed example (docs/protocol.md)
    ],
)
def test_encrypted_size_formula(plaintext_size: int, expected: int) -> None:
    assert encrypted_size(plaintext_size) == expected


def test_generated_objects_have_the_formula_size(sandbox: Sandbox) -> None:
    for spec in (BAM, FASTQ, BARE, EMPTY):
        assert sandbox.object_path(spec.file_id).stat().st_size == encrypted_size(spec.size)


def test_envelope_logs_no_key_material(
    sandbox: Sandbox, http: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    assert http.get(f"{sandbox.dcs_url}/objects/{BAM.file_id}/envelopes").status_code == 200
    session_key = sandbox.stored_file(BAM.file_id).session_key.hex()
    central_secret = sandbox.archive._central_secret_key.hex()
    for secret in (session_key, central_secret):
        assert secret not in caplog.text.lower()


# --- Object store: ranges and presigned URLs --------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),  # first bytes
        ("bytes=65564-131127", 65_564, 131_127),  # exactly the second cipher segment
        ("bytes=200000-", 200_000, 200_111),  # open-ended
        ("bytes=-50", 200_062, 200_111),  # suffix: the last 50 bytes
        ("bytes=-999999", 0, 200_111),  # suffix longer than the object
        ("bytes=200100-300000", 200_100, 200_111),  # end past the object is clamped
        ("bytes=200111-200111", 200_111, 200_111),  # the very last byte
    ],
)
def test_range_requests_return_exact_bytes(
    sandbox: Sandbox, http: requests.Session, range_header: str, start: int, end: int
) -> None:
    response = http.get(object_url(http, sandbox, BAM.file_id), headers={"Range": range_header})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/200112"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.content == object_bytes(sandbox, BAM.file_id)[start : end + 1]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Range: the whole object
        {"Range": "bytes=5-2"},  # invalid range: ignored, as RFC 9110 says
        {"Range": "bytes=0-1,5-6"},  # multiple ranges: not supported, ignored like S3
    ],
)
def test_requests_without_a_usable_range_get_the_whole_object(
    sandbox: Sandbox, http: requests.Session, headers: dict[str, str]
) -> None:
    response = http.get(object_url(http, sandbox, BAM.file_id), headers=headers)
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.content == object_bytes(sandbox, BAM.file_id)


@pytest.mark.parametrize(
    ("file_id", "range_header"),
    [
        (BAM.file_id, "bytes=200112-"),  # starts right after the end
        (BAM.file_id, "bytes=300000-300010"),  # entirely past the end
        (BAM.file_id, "bytes=-0"),  # empty suffix
        (EMPTY.file_id, "bytes=0-0"),  # any range of an empty object
    ],
)
def test_unsatisfiable_ranges_answer_416(
    sandbox: Sandbox, http: requests.Session, file_id: str, range_header: str
) -> None:
    response = http.get(object_url(http, sandbox, file_id), headers={"Range": range_header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{sandbox.encrypted_size(file_id)}"


def test_expired_url_is_refused(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.get(sandbox.presigned_url(BAM.file_id, ttl=-1))
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert "expired" in response.text


def tamper_signature(url: str) -> str:
    return re.sub(
        r"signature=([0-9a-f])", lambda m: f"signature={'0' if m[1] != '0' else '1'}", url
    )


def extend_expiry(url: str) -> str:
    return re.sub(r"expires=(\d+)", lambda m: f"expires={int(m[1]) + 3600}", url)


def strip_query(url: str) -> str:
    return url.split("?")[0]


def swap_object(url: str, other_url: str) -> str:
    return strip_query(other_url) + "?" + url.split("?")[1]


@pytest.mark.parametrize(
    "forge",
    [tamper_signature, extend_expiry, strip_query],
    ids=["tampered-signature", "extended-expiry", "no-query"],
)
def test_forged_urls_are_refused(
    sandbox: Sandbox, http: requests.Session, forge: Callable[[str], str]
) -> None:
    url = object_url(http, sandbox, BAM.file_id)
    assert http.get(forge(url)).status_code == 403


def test_signature_is_bound_to_the_object(sandbox: Sandbox, http: requests.Session) -> None:
    bam_url = object_url(http, sandbox, BAM.file_id)
    bare_url = object_url(http, sandbox, BARE.file_id)
    assert http.get(swap_object(bam_url, bare_url)).status_code == 403


def test_request_log_records_requests_without_query(
    sandbox: Sandbox, http: requests.Session
) -> None:
    url = object_url(http, sandbox, BAM.file_id)
    http.get(url, headers={"Range": "bytes=0-99"})
    dcs, store = sandbox.requests.snapshot()
    assert (dcs.method, dcs.status, dcs.file_id) == ("GET", 200, BAM.file_id)
    assert store.path == urlsplit(url).path
    assert (store.status, store.range, store.file_id) == (206, "bytes=0-99", BAM.file_id)
    assert sandbox.requests.matching(path_prefix="/s3/", file_id=BARE.file_id) == []


# --- Fault injection ----------------------------------------------------------------------------


def test_dropped_connection_truncates_the_body(sandbox: Sandbox, http: requests.Session) -> None:
    faults = sandbox.set_faults(BAM.file_id, Faults(drop_after_bytes=100_000))
    url = object_url(http, sandbox, BAM.file_id)

    status, headers, body = raw_get(url, {"Range": "bytes=0-149999"})
    assert (status, headers["content-length"]) == (206, "150000")
    assert body == object_bytes(sandbox, BAM.file_id)[:100_000]  # then the connection broke

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(url)  # requests reports the incomplete body as an error
    assert faults.counts["drop"] == 2
    assert [r.fault for r in sandbox.requests.matching(path_prefix="/s3/")] == ["drop", "drop"]


def test_drop_applies_only_to_longer_bodies_and_to_its_budget(
    sandbox: Sandbox, http: requests.Session
) -> None:
    faults = sandbox.set_faults(BAM.file_id, Faults(drop_after_bytes=1_000, drop_times=1))
    url = object_url(http, sandbox, BAM.file_id)
    assert http.get(url, headers={"Range": "bytes=0-999"}).status_code == 206  # short enough
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(url)
    assert len(http.get(url).content) == sandbox.encrypted_size(BAM.file_id)  # budget used up
    assert faults.counts["drop"] == 1


def test_short_body_sends_less_than_content_length(
    sandbox: Sandbox, http: requests.Session
) -> None:
    faults = sandbox.set_faults(BAM.file_id, Faults(short_body=True))
    url = object_url(http, sandbox, BAM.file_id)
    status, headers, body = raw_get(url, {"Range": "bytes=0-999"})
    assert (status, headers["content-length"], len(body)) == (206, "1000", 500)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(url)
    assert faults.counts["short_body"] == 2


def test_fail_status_answers_the_next_n_requests(sandbox: Sandbox, http: requests.Session) -> None:
    faults = sandbox.set_faults(BAM.file_id, Faults(fail_status=503, fail_times=2))
    url = object_url(http, sandbox, BAM.file_id)
    statuses = [http.get(url, headers={"Range": "bytes=0-9"}).status_code for _ in range(3)]
    assert statuses == [503, 503, 206]
    assert faults.counts["fail_status"] == 2
    assert faults.counts["drop"] == faults.counts["short_body"] == 0


def test_faults_can_change_while_serving(sandbox: Sandbox, http: requests.Session) -> None:
    faults = sandbox.set_faults(BAM.file_id, Faults(fail_status=500, fail_times=100))
    url = object_url(http, sandbox, BAM.file_id)
    assert http.get(url).status_code == 500
    faults.update(fail_status=None)
    assert http.get(url).status_code == 200
    with pytest.raises(TypeError):
        faults.update(no_such_setting=1)


def test_short_url_ttl_expires_mid_download(sandbox: Sandbox, http: requests.Session) -> None:
    faults = sandbox.set_faults(BAM.file_id, Faults(url_ttl=1.0))
    response = http.get(f"{sandbox.dcs_url}/objects/{BAM.file_id}")
    assert response.headers["Cache-Control"] == "max-age=1, private"
    url = response.json()["access_methods"][0]["access_url"]["url"]
    assert http.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    expires = float(re.search(r"expires=([\d.]+)", url)[1])  # type: ignore[index]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert http.get(url, headers={"Range": "bytes=10-19"}).status_code == 403
    fresh = object_url(http, sandbox, BAM.file_id)  # what a client does on 403
    assert http.get(fresh, headers={"Range": "bytes=10-19"}).status_code == 206
    assert faults.counts["url_ttl"] == 2


def test_faults_stay_with_their_file(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.set_faults(BAM.file_id, Faults(fail_status=500, fail_times=5))
    assert http.get(object_url(http, sandbox, BARE.file_id)).status_code == 200
    with pytest.raises(KeyError):
        sandbox.set_faults("GHGAF99999999999999", Faults())


# --- Server behaviour ----------------------------------------------------------------------------


def test_parallel_range_requests_are_served_concurrently(
    sandbox_factory: SandboxFactory,
) -> None:
    big = SandboxFile("GHGAF00000000000020", ".bam", 3_000_000)
    sandbox = sandbox_factory([big])
    expected = object_bytes(sandbox, big.file_id)
    with requests.Session() as session:
        session.trust_env = False
        url = object_url(session, sandbox, big.file_id)
    part = 250_000
    ranges = [
        (start, min(start + part, len(expected)) - 1) for start in range(0, len(expected), part)
    ]

    def fetch(byte_range: tuple[int, int]) -> bytes:
        with requests.Session() as session:
            session.trust_env = False
            headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"}
            response = session.get(url, headers=headers, timeout=10)
            assert response.status_code == 206
            return response.content

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert b"".join(pool.map(fetch, ranges)) == expected


def test_a_stalled_download_does_not_block_other_requests(
    sandbox_factory: SandboxFactory,
) -> None:
    big = SandboxFile("GHGAF00000000000021", ".bam", 40_000_000)
    sandbox = sandbox_factory([big])
    with requests.Session() as stalled, requests.Session() as other:
        stalled.trust_env = other.trust_env = False
        url = object_url(other, sandbox, big.file_id)
        with stalled.get(url, stream=True, timeout=10) as hanging:  # body never read
            assert hanging.status_code == 200
            started = time.monotonic()
            assert other.get(f"{sandbox.dcs_url}/health", timeout=5).status_code == 200
            assert time.monotonic() - started < 2


@pytest.mark.slow
def test_large_object_is_generated_and_streamed_in_bounded_memory(
    sandbox_factory: SandboxFactory, http: requests.Session
) -> None:
    huge = SandboxFile("GHGAF00000000000022", ".bam", 256 * 2**20)
    tracemalloc.start()
    try:
        sandbox = sandbox_factory([huge])
        digest = hashlib.sha256()
        with http.get(object_url(http, sandbox, huge.file_id), stream=True) as response:
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # a few chunks and waitress's buffers, never the object
    with sandbox.object_path(huge.file_id).open("rb") as on_disk:
        assert digest.hexdigest() == hashlib.file_digest(on_disk, "sha256").hexdigest()
    assert sandbox.encrypted_size(huge.file_id) == encrypted_size(huge.size)


def test_stop_closes_the_port_and_is_idempotent(user_keys: UserKeys, tmp_path: Path) -> None:
    with Sandbox(files=[BARE], user_public_key=user_keys.public_key, workdir=tmp_path) as sandbox:
        port = sandbox.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    sandbox.stop()


def test_restarted_sandbox_serves_the_same_urls(sandbox: Sandbox, http: requests.Session) -> None:
    url = object_url(http, sandbox, BAM.file_id)
    sandbox.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(url)
    sandbox.start()
    assert http.get(url).content == object_bytes(sandbox, BAM.file_id)


def test_sandbox_without_workdir_cleans_up(user_keys: UserKeys) -> None:
    sandbox = Sandbox(files=[BARE], user_public_key=user_keys.public_key).start()
    workdir = sandbox.workdir
    assert sandbox.plaintext_path(BARE.file_id).exists()
    sandbox.stop()
    assert not workdir.exists()
    with pytest.raises(RuntimeError):
        sandbox.start()


# --- Environment, scenarios and serve() -------------------------------------------------------


def test_env_describes_the_work_package(sandbox: Sandbox, user_keys: UserKeys) -> None:
    env = sandbox.env()
    assert env == {
        "GHGA_DOWNLOAD_API_URL": sandbox.dcs_url,
        "GHGA_FILE_IDS": ",".join(spec.file_id for spec in SMALL_BATCH),
        "GHGA_FILE_EXTENSIONS": ".bam,.fastq.gz,,.txt,.bam",
        "GHGA_USER_ID": sandbox.user_id,
        "GHGA_USER_PUBLIC_KEY": base64.b64encode(user_keys.public_key).decode(),
        "GHGA_PUBLIC_KEY": base64.b64encode(sandbox.ghga_public_key).decode(),
        # The same work package through GHGA's own APIs (work_package_source: wps).
        "GHGA_WKVS_URL": sandbox.wkvs_url,
        "GHGA_DOWNLOAD_TOKEN": sandbox.download_token,
    }
    assert len(base64.b64decode(env["GHGA_PUBLIC_KEY"])) == 32


def test_default_files_match_the_contract() -> None:
    extensions = {spec.extension for spec in DEFAULT_FILES}
    assert {".bam", ".fastq.gz", ""} <= extensions
    assert [spec.stage_seconds for spec in DEFAULT_FILES if spec.stage_seconds] == [3]
    assert all(100_000 <= spec.size <= 5_000_000 for spec in DEFAULT_FILES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1500", 1500), ("100kB", 100_000), ("1MB", 1_000_000), ("64MiB", 64 * 2**20), (7, 7)],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_parse_file_specs_builds_a_scenario() -> None:
    specs = parse_file_specs(
        3,
        sizes=["1MB", 500],
        stage_seconds=3,
        unavailable=["GHGAF00000000000002", "GHGAF99999999999999"],
    )
    assert [spec.file_id for spec in specs] == [
        "GHGAF00000000000001",
        "GHGAF00000000000002",
        "GHGAF00000000000003",
        "GHGAF99999999999999",  # not generated: added as a file the archive lacks
    ]
    assert [spec.size for spec in specs[:3]] == [1_000_000, 500, 1_000_000]
    assert [spec.extension for spec in specs[:3]] == [".bam", ".fastq.gz", ""]
    assert [spec.available for spec in specs] == [True, False, True, False]
    assert all(spec.stage_seconds == 3 for spec in specs[:3])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"file_id": ""},  # empty ID
        {"file_id": "GHGAF1,GHGAF2"},  # would break GHGA_FILE_IDS
        {"file_id": "GHGAF1", "size": -1},
        {"file_id": "GHGAF1", "stage_seconds": -1},
    ],
)
def test_invalid_file_specs_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SandboxFile(**kwargs)  # type: ignore[arg-type]


def test_duplicate_file_ids_are_rejected(user_keys: UserKeys, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Sandbox(files=[BARE, BARE], user_public_key=user_keys.public_key, workdir=tmp_path)


def test_serve_writes_keys_and_env_file_once_ready(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    stop = threading.Event()
    ready: list[dict[str, str]] = []

    def on_ready(sandbox: Sandbox) -> None:
        assert env_file.read_text() == format_env(sandbox.env())  # written before we hear
        ready.append(sandbox.env())

    runner = threading.Thread(
        target=serve,
        kwargs={
            "files": [BARE],
            "directory": tmp_path,
            "env_file": env_file,
            "on_ready": on_ready,
            "stop_event": stop,
        },
    )
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not ready and time.monotonic() < deadline:
            time.sleep(0.02)
        [env] = ready
        with requests.Session() as session:
            session.trust_env = False
            assert session.get(env["GHGA_DOWNLOAD_API_URL"] + "/health").status_code == 200
        public_pem = (tmp_path / "key.pub").read_text()
        assert env["GHGA_USER_PUBLIC_KEY"] in public_pem
        assert "CRYPT4GH PRIVATE KEY" in (tmp_path / "key.sec").read_text()
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert not env_file.exists()  # never left pointing at a dead server


def test_serve_reuses_an_existing_key_pair(tmp_path: Path) -> None:
    keys: list[str] = []
    for _ in range(2):
        stop = threading.Event()
        stop.set()  # stop as soon as it is up
        serve(
            [BARE],
            tmp_path,
            on_ready=lambda sb: keys.append(sb.env()["GHGA_USER_PUBLIC_KEY"]),
            stop_event=stop,
        )
    assert keys[0] == keys[1]


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    script = textwrap.dedent(
        f"""
        import logging
        from pathlib import Path
        from ghga_tasks.sandbox import SandboxFile, serve
        logging.basicConfig(level=logging.INFO)
        serve([SandboxFile("GHGAF00000000000001", ".bam", 1000)], Path({str(tmp_path)!r}),
              env_file=Path({str(env_file)!r}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "GHGA_DOWNLOAD_API_URL=http://127.0.0.1:" in env_file.read_text()
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "GHGA sandbox stopped" in stderr
    assert not env_file.exists()
