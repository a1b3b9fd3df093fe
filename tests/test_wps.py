"""The Work Package Service source (``work_package_source: wps``) against the sandbox's
WKVS, WPS and work-order-token-checking DCS on loopback: real HTTP, real SealedBoxes,
real ES256 tokens, real Crypt4GH, and a real Snakemake run."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from crypt4gh import lib
from crypt4gh.keys import c4gh, get_public_key

from ghga_tasks.core import batch
from ghga_tasks.core.download import download_file
from ghga_tasks.core.errors import (
    ApiError,
    AuthorizationError,
    ConfigurationError,
    PublicKeyMismatch,
)
from ghga_tasks.core.settings import Settings
from ghga_tasks.core.tokens import (
    ClaimsError,
    decode_base64url,
    open_sealed,
    parse_download_token,
    read_private_key,
    read_work_order_claims,
)
from ghga_tasks.core.wps import (
    DEFAULT_WKVS_URL,
    WorkOrderTokens,
    WorkPackageClient,
    download_token_from,
    resolve_wkvs_url,
    work_package_from_wps,
    wps_session,
)
from ghga_tasks.sandbox import Sandbox, SandboxFile, ensure_user_keypair
from ghga_tasks.sandbox.presign import OUTBOX_PATH
from ghga_tasks.sandbox.wps import WPS_BASE_PATH, seal

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

BATCH = [
    SandboxFile("GHGAF00000000000001", ".bam", size=200_000),
    SandboxFile("GHGAF00000000000002", ".fastq.gz", size=70_000, stage_seconds=2),
    SandboxFile("GHGAF00000000000003", "", size=1_000),
]
ONE_FILE = BATCH[:1]


@pytest.fixture
def wps_settings(fast_settings: Settings) -> Settings:
    return dataclasses.replace(fast_settings, work_package_source="wps")


def decrypted(path: Path, secret_key: bytes) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as stream:
        lib.decrypt([(0, secret_key, None)], stream, out)
    return out.getvalue()


def downloaded_files(output_dir: Path) -> list[str]:
    """Every .c4gh or .part file the client wrote (state files under .ghga_tasks don't count)."""
    if not output_dir.exists():
        return []
    return sorted(p.name for p in output_dir.iterdir() if ".c4gh" in p.name)


def assert_no_secret_in(text: str, sandbox: Sandbox) -> None:
    for secret in sandbox.work_packages.issued_secrets:
        assert secret not in text


def wot_requests(sandbox: Sandbox) -> list:
    return [
        r
        for r in sandbox.requests.matching(path_prefix=WPS_BASE_PATH, method="POST")
        if r.path.endswith("/work-order-tokens")
    ]


# --- the pasted token, sealed boxes, claims ---------------------------------------------------

VALID_ID = "c5d0e2d4-8a4b-4f3e-9a47-0f6f4c1d2b3a"
VALID_SEALED = base64.b64encode(bytes(72)).decode()  # 96 characters, like a real one


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("", "one ':'"),  # nothing pasted
        (VALID_SEALED, "one ':'"),  # only the second half
        (f"{VALID_ID}:{VALID_SEALED}:x", "one ':'"),  # a second colon
        (f"{VALID_ID[:-1]}x:{VALID_SEALED}", "not a work package ID"),  # no UUID
        (f"{VALID_ID}:{VALID_SEALED[:40]}", "wrong length"),  # cut off while copying
        (f"{VALID_ID}:{'!' * 96}", "not base64"),  # mangled characters
    ],
)
def test_malformed_download_token_is_a_configuration_error(token: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        parse_download_token(token, source="GHGA_DOWNLOAD_TOKEN")
    assert caught.value.exit_code == 2
    assert "GHGA_DOWNLOAD_TOKEN" in str(caught.value)
    if token:
        assert token not in str(caught.value) and VALID_SEALED not in str(caught.value)


def test_pasted_token_with_surrounding_whitespace_is_accepted() -> None:
    token = parse_download_token(f"  {VALID_ID}:{VALID_SEALED}\n", source="paste")
    assert token.work_package_id == VALID_ID
    assert VALID_SEALED not in repr(token)  # the sealed part never shows in a repr


def test_sealed_box_opens_only_with_the_matching_private_key(user_keys, tmp_path: Path) -> None:
    sealed = seal("the access token", user_keys.public_key)
    assert open_sealed(sealed, user_keys.secret_key) == "the access token"
    other = ensure_user_keypair(tmp_path / "other")
    other_secret = read_private_key(other.secret_key_path, None, setting="key")
    with pytest.raises(ValueError, match="another key"):
        open_sealed(sealed, other_secret)


def _jwt_with_claims(claims: dict[str, object]) -> str:
    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    header = encode(json.dumps({"alg": "ES256"}).encode())
    return f"{header}.{encode(json.dumps(claims).encode())}.{encode(b'signature')}"


@pytest.mark.parametrize("padding", range(4))
def test_claims_are_read_whatever_padding_base64url_dropped(user_keys, padding: int) -> None:
    # The claims' length decides how many '=' base64url drops (0, 1 or 2); the official
    # client forgets to restore them and skips its key check. Vary the length to hit all.
    claims = {
        "work_type": "download",
        "accession": "GHGAF00000000000001",
        "user_public_crypt4gh_key": base64.b64encode(user_keys.public_key).decode(),
        "iat": 1_700_000_000,
        "exp": 1_700_000_030,
        "pad": "x" * padding,
    }
    token = _jwt_with_claims(claims)
    read = read_work_order_claims(token)
    assert read.user_public_key == user_keys.public_key
    assert read.accession == "GHGAF00000000000001"
    assert read.lifetime == 30
    assert decode_base64url(token.split(".")[1]) == json.dumps(claims).encode()


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("not-a-jwt", "segments"),  # no dots at all
        ("a.!!!.c", "base64url JSON"),  # claims garbled
        (_jwt_with_claims({"iat": 1, "exp": 2}), "user_public_crypt4gh_key"),  # key missing
        (_jwt_with_claims({"user_public_crypt4gh_key": "AAAA", "iat": 1, "exp": 2}), "32 bytes"),
    ],
)
def test_unusable_work_order_token_claims_are_errors(token: str, problem: str) -> None:
    with pytest.raises(ClaimsError, match=problem):
        read_work_order_claims(token)


# --- settings, passphrases, where the token comes from ----------------------------------------


def test_wkvs_url_config_beats_env_which_beats_ghga_default() -> None:
    env = {"GHGA_WKVS_URL": "http://127.0.0.1:1/.well-known/"}
    assert resolve_wkvs_url(Settings(wkvs_url="https://x.test/wk"), env) == "https://x.test/wk"
    assert resolve_wkvs_url(Settings(), env) == "http://127.0.0.1:1/.well-known"
    assert resolve_wkvs_url(Settings(), {}) == DEFAULT_WKVS_URL
    with pytest.raises(ConfigurationError, match="GHGA_WKVS_URL"):
        resolve_wkvs_url(Settings(), {"GHGA_WKVS_URL": "ftp://x"})


def test_plain_http_wkvs_url_to_another_machine_needs_allow_http() -> None:
    # The access token would travel unencrypted to whatever the WKVS names.
    remote = {"GHGA_WKVS_URL": "http://wkvs.example.org/.well-known"}
    with pytest.raises(ConfigurationError, match="allow_http") as caught:
        resolve_wkvs_url(Settings(), remote)
    assert caught.value.exit_code == 2
    assert resolve_wkvs_url(Settings(allow_http=True), remote) == remote["GHGA_WKVS_URL"]


def test_download_token_file_beats_env_and_the_prompt_comes_last(tmp_path: Path) -> None:
    from_env, from_file = f"{VALID_ID}:{VALID_SEALED}", f"{uuid.uuid4()}:{VALID_SEALED}"
    token_file = tmp_path / "token.txt"
    token_file.write_text(from_file + "\n")
    token_file.chmod(0o600)
    env = {"GHGA_DOWNLOAD_TOKEN": from_env}
    with_file = Settings(download_token_file=str(token_file))
    assert download_token_from(with_file, env).work_package_id == from_file.split(":")[0]
    assert download_token_from(Settings(), env).work_package_id == VALID_ID
    asked = download_token_from(Settings(), {}, ask=lambda: from_file)
    assert asked.work_package_id == from_file.split(":")[0]
    with pytest.raises(ConfigurationError, match="GHGA_DOWNLOAD_TOKEN: is not set"):
        download_token_from(Settings(), {})
    with pytest.raises(ConfigurationError, match="download_token_file: cannot read"):
        download_token_from(Settings(download_token_file=str(tmp_path / "missing")), {})


@dataclasses.dataclass(frozen=True)
class LockedPair:
    public_key: bytes
    public_key_path: Path
    secret_key_path: Path


@pytest.fixture
def locked_pair(tmp_path: Path) -> LockedPair:
    """A key pair whose private key is passphrase-protected ("s3cret")."""
    pub, sec = tmp_path / "locked.pub", tmp_path / "locked.sec"
    with contextlib.redirect_stderr(io.StringIO()):  # crypt4gh prints a warning
        c4gh.generate(str(sec), str(pub), passphrase=b"s3cret", comment=b"test")
    return LockedPair(bytes(get_public_key(str(pub))), pub, sec)


def test_locked_private_key_opens_with_the_passphrase(locked_pair: LockedPair) -> None:
    key = read_private_key(locked_pair.secret_key_path, lambda: "s3cret", setting="key")
    assert len(key) == 32


@pytest.mark.parametrize(
    ("ask", "problem"),
    [
        (None, "passphrase-protected; set GHGA_KEY_PASSPHRASE"),  # unattended, nothing set
        (lambda: "wrong", "wrong passphrase"),  # crypt4gh itself would sys.exit(2) here
    ],
)
def test_locked_private_key_without_the_right_passphrase_is_a_clear_error(
    locked_pair: LockedPair, ask, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        read_private_key(locked_pair.secret_key_path, ask, setting="user_private_key")
    assert caught.value.exit_code == 2


def test_wps_mode_reads_a_locked_keys_passphrase_from_the_environment(
    sandbox_factory, wps_settings, locked_pair: LockedPair
) -> None:
    sandbox = sandbox_factory(ONE_FILE, user_public_key=locked_pair.public_key)
    settings = dataclasses.replace(
        wps_settings,
        user_public_key=locked_pair.public_key_path,
        user_private_key=locked_pair.secret_key_path,
    )
    env = {**sandbox.env(), "GHGA_KEY_PASSPHRASE": "s3cret"}
    assert [f.file_id for f in work_package_from_wps(settings, env).files] == [ONE_FILE[0].file_id]


# --- downloads in wps mode --------------------------------------------------------------------


def run_batch(settings: Settings, env: dict[str, str]) -> None:
    """What the workflow does: plan, then one download per planned file."""
    for entry in batch.plan_batch(settings, env):
        if entry.to_download:
            batch.download_one(settings, entry.file_name, env)


def test_wps_batch_downloads_files_that_decrypt_to_the_archive_plaintext(
    sandbox_factory, wps_settings, user_keys
) -> None:
    sandbox = sandbox_factory(BATCH, env_clients=False)
    run_batch(wps_settings, sandbox.env())
    for spec in BATCH:
        path = wps_settings.output_dir / f"{spec.file_id}{spec.extension}.c4gh"
        assert (
            decrypted(path, user_keys.secret_key)
            == sandbox.plaintext_path(spec.file_id).read_bytes()
        )
    dcs_calls = sandbox.requests.matching(path_prefix="/ga4gh/drs/v1/objects")
    assert dcs_calls and all(r.bearer for r in dcs_calls)  # a WOT on every call ...
    assert {r.status for r in dcs_calls} <= {200, 202}  # ... and the DCS accepted each one


def test_work_order_tokens_are_reused_for_less_than_their_life(sandbox_factory, user_keys) -> None:
    sandbox = sandbox_factory(ONE_FILE)
    now = [1000.0]
    tokens = WorkOrderTokens(
        _client(sandbox, user_keys.secret_key),
        user_public_key=user_keys.public_key,
        key_file=Path("key.pub"),
        clock=lambda: now[0],
    )
    file_id = ONE_FILE[0].file_id
    first = tokens.token_for(file_id)
    now[0] += 19.9  # 30 s life minus the 10 s margin: still reused
    assert tokens.token_for(file_id) == first
    now[0] += 0.2  # past the reuse window, long before the token itself expires
    second = tokens.token_for(file_id)
    assert second != first
    tokens.discard(file_id)  # what a 401/403 from the Download API does
    assert tokens.token_for(file_id) not in (first, second)
    assert len(wot_requests(sandbox)) == 3


def _client(sandbox: Sandbox, secret_key: bytes) -> WorkPackageClient:
    token = parse_download_token(sandbox.download_token, source="test")
    return WorkPackageClient(
        f"{sandbox.base_url}{WPS_BASE_PATH}",
        token.work_package_id,
        access_token=open_sealed(token.sealed_access_token, secret_key),
        private_key=secret_key,
        session=wps_session(retries=1),
        timeout=(5, 5),
    )


def test_an_expired_work_order_token_is_replaced_once_and_the_download_succeeds(
    sandbox_factory, wps_settings, user_keys
) -> None:
    sandbox = sandbox_factory(ONE_FILE, env_clients=False)
    package = batch.load_work_package(wps_settings, sandbox.env())
    sandbox.work_packages.expire_next_work_order_tokens(1)
    package.work_order_tokens.discard(ONE_FILE[0].file_id)  # so the next call gets a bad one
    download_file(
        package.files[0], package, wps_settings, batch.download_api(package, wps_settings)
    )
    statuses = [r.status for r in sandbox.requests.matching(path_prefix="/ga4gh/drs/v1/objects")]
    assert statuses[0] == 401 and set(statuses[1:]) == {200}
    path = wps_settings.output_dir / package.files[0].file_name
    assert (
        decrypted(path, user_keys.secret_key)
        == sandbox.plaintext_path(ONE_FILE[0].file_id).read_bytes()
    )


# --- each failure: a clear error, its exit code, nothing downloaded ---------------------------


def _wrong_private_key(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    other = ensure_user_keypair(tmp_path / "other")
    return dataclasses.replace(settings, user_private_key=other.secret_key_path), sandbox.env()


def _malformed_token(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    return settings, {**sandbox.env(), "GHGA_DOWNLOAD_TOKEN": sandbox.download_token[:-10]}


def _expired_work_package(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    minted = sandbox.work_packages.mint(
        {"GHGAF00000000000001": ".bam"}, sandbox.user_public_key, valid_seconds=-1
    )
    return settings, {**sandbox.env(), "GHGA_DOWNLOAD_TOKEN": minted.download_token}


def _wkvs_without_dcs_url(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    sandbox.well_known_values.omit.add("dcs_api_url")
    return settings, sandbox.env()


def _wrong_wkvs_url(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    return settings, {**sandbox.env(), "GHGA_WKVS_URL": f"{sandbox.base_url}/not-the-wkvs"}


def _wkvs_naming_a_plain_http_dcs(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    sandbox.well_known_values.overrides["dcs_api_url"] = "http://dcs.example.org/ga4gh/drs/v1"
    return settings, sandbox.env()


def _wot_for_another_key(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    sandbox.work_packages.claimed_user_key = bytes(range(32))
    return settings, sandbox.env()


def _key_file_of_another_pair(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    other = ensure_user_keypair(tmp_path / "other")
    return dataclasses.replace(settings, user_public_key=other.public_key_path), sandbox.env()


def _every_wot_expired(sandbox: Sandbox, settings: Settings, tmp_path: Path):
    sandbox.work_packages.expire_next_work_order_tokens(math.inf)
    return settings, sandbox.env()


@pytest.mark.parametrize(
    ("arrange", "error", "exit_code", "message"),
    [
        # The token was sealed to the user's key; another private key cannot open it.
        (_wrong_private_key, ConfigurationError, 2, "cannot open the download token"),
        # A token cut short while copying it from the portal.
        (_malformed_token, ConfigurationError, 2, "is not a GHGA download token"),
        # The WPS refuses an expired package with 403 and says why.
        (_expired_work_package, AuthorizationError, 1, "Work package has expired"),
        # A wrong wkvs_url (a 404 page), or a service there without the values we need.
        (_wrong_wkvs_url, ConfigurationError, 2, "wkvs_url: .*/not-the-wkvs is not GHGA's"),
        (_wkvs_without_dcs_url, ConfigurationError, 2, "wkvs_url: .* lack dcs_api_url"),
        # A WKVS that sends WOTs to a Download API over plain http on another machine.
        (_wkvs_naming_a_plain_http_dcs, ApiError, 1, "dcs_api_url: .* plain http"),
        # The WOT names another key than the user's key file: the envelope would be
        # unreadable for the user, so nothing is downloaded (exit 6).
        (_wot_for_another_key, PublicKeyMismatch, 6, "not the key this work package"),
        # The same check the other way round: the key file is not the package's key.
        (_key_file_of_another_pair, PublicKeyMismatch, 6, "not the key this work package"),
        # The DCS refuses every WOT: one fresh token is tried, then a clear error.
        (_every_wot_expired, AuthorizationError, 1, "refused a fresh work order token too"),
    ],
)
def test_wps_failures_are_clear_errors_and_download_nothing(
    sandbox_factory, wps_settings, tmp_path, arrange, error, exit_code, message
) -> None:
    sandbox = sandbox_factory(BATCH, env_clients=False)
    settings, env = arrange(sandbox, wps_settings, tmp_path)
    with pytest.raises(error, match=message) as caught:
        run_batch(settings, env)
    assert caught.value.exit_code == exit_code
    assert_no_secret_in(str(caught.value), sandbox)
    assert downloaded_files(settings.output_dir) == []
    assert not sandbox.requests.matching(path_prefix=OUTBOX_PATH)


def test_every_wot_expired_asks_for_exactly_one_fresh_token_per_refusal(
    sandbox_factory, wps_settings
) -> None:
    sandbox = sandbox_factory(ONE_FILE, env_clients=False)
    sandbox.work_packages.expire_next_work_order_tokens(math.inf)
    with pytest.raises(AuthorizationError):
        run_batch(wps_settings, sandbox.env())
    # One WOT while loading (the key check), then the probe: refused, one retry, refused.
    assert len(wot_requests(sandbox)) == 2
    probes = sandbox.requests.matching(path_prefix="/ga4gh/drs/v1/objects")
    assert [r.status for r in probes] == [401, 401]


def test_file_withdrawn_from_the_package_is_a_403_and_nothing_is_downloaded(
    sandbox_factory, wps_settings
) -> None:
    sandbox = sandbox_factory(BATCH, env_clients=False)
    package = batch.load_work_package(wps_settings, sandbox.env())
    withdrawn = package.files[1]
    sandbox.work_packages.withdraw_file(sandbox.work_package.work_package_id, withdrawn.file_id)
    api = batch.download_api(package, wps_settings)
    with pytest.raises(AuthorizationError, match="File is not contained in work package") as caught:
        download_file(withdrawn, package, wps_settings, api)
    assert caught.value.exit_code == 1
    assert downloaded_files(wps_settings.output_dir) == []
    assert not sandbox.requests.matching(path_prefix="/ga4gh", file_id=withdrawn.file_id)


def test_work_package_repr_shows_no_secret(sandbox_factory, wps_settings) -> None:
    sandbox = sandbox_factory(ONE_FILE)
    package = batch.load_work_package(wps_settings, sandbox.env())
    assert_no_secret_in(repr(package) + repr(package.work_order_tokens), sandbox)


# --- the sandbox's side: WKVS, WPS and the DCS's token checks ---------------------------------


def test_wkvs_lists_what_the_official_client_requires(sandbox_factory, http) -> None:
    sandbox = sandbox_factory(ONE_FILE)
    values = http.get(f"{sandbox.wkvs_url}/values").json()
    assert {"crypt4gh_public_keys", "wps_api_url", "dcs_api_url", "ucs_api_url"} <= set(values)
    assert values["dcs_api_url"] == sandbox.dcs_url
    # Data hub (upload) keys per storage alias, as GHGA publishes them; never the central
    # key its envelopes are written with (docs/protocol.md, "Envelope").
    listed = {alias: base64.b64decode(key) for alias, key in values["crypt4gh_public_keys"].items()}
    assert listed == sandbox.hub_public_keys and len(listed) >= 2
    assert sandbox.ghga_public_key not in listed.values()


def _wot(sandbox: Sandbox, http: requests.Session, secret_key: bytes, accession: str) -> str:
    token = parse_download_token(sandbox.download_token, source="test")
    access = open_sealed(token.sealed_access_token, secret_key)
    url = f"{sandbox.base_url}{WPS_BASE_PATH}/work-packages/{token.work_package_id}"
    answer = http.post(
        f"{url}/files/{accession}/work-order-tokens", headers={"Authorization": f"Bearer {access}"}
    )
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "max-age=30, private"
    return open_sealed(answer.json(), secret_key)


def test_wps_issues_es256_tokens_with_the_protocol_claims(sandbox_factory, http, user_keys) -> None:
    sandbox = sandbox_factory(ONE_FILE)
    token = _wot(sandbox, http, user_keys.secret_key, ONE_FILE[0].file_id)
    header = json.loads(decode_base64url(token.split(".")[0]))
    claims = json.loads(decode_base64url(token.split(".")[1]))
    assert header == {"alg": "ES256"}
    assert set(claims) == {
        "work_type",
        "file_id",
        "accession",
        "user_public_crypt4gh_key",
        "iat",
        "exp",
    }
    assert claims["work_type"] == "download" and claims["accession"] == ONE_FILE[0].file_id
    assert claims["exp"] - claims["iat"] == 30
    assert str(uuid.UUID(claims["file_id"])) == claims["file_id"]


@pytest.mark.parametrize(
    ("bearer", "status", "body_key"),
    [
        (None, 401, "detail"),  # no token at all: FastAPI's "Not authenticated"
        ("a.b.c", 401, "detail"),  # JWT-shaped, not signed by the WPS
        ("other-file", 403, "exception_id"),  # genuine WOT, but for another object
    ],
)
def test_dcs_requiring_wots_refuses_bad_ones(
    sandbox_factory, http, user_keys, bearer, status, body_key
) -> None:
    files = [*ONE_FILE, SandboxFile("GHGAF00000000000009", ".txt")]
    sandbox = sandbox_factory(files, env_clients=False)
    if bearer == "other-file":
        bearer = _wot(sandbox, http, user_keys.secret_key, "GHGAF00000000000009")
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    answer = http.get(f"{sandbox.dcs_url}/objects/{ONE_FILE[0].file_id}", headers=headers)
    assert answer.status_code == status
    assert body_key in answer.json()


def test_dcs_in_default_mode_still_serves_env_clients_but_checks_wots(
    sandbox_factory, http, user_keys
) -> None:
    sandbox = sandbox_factory(ONE_FILE)
    url = f"{sandbox.dcs_url}/objects/{ONE_FILE[0].file_id}"
    assert http.get(url).status_code == 200  # env mode: no token
    assert http.get(url, headers={"Authorization": "Bearer anything"}).status_code == 200
    assert http.get(url, headers={"Authorization": "Bearer a.b.c"}).status_code == 401
    wot = _wot(sandbox, http, user_keys.secret_key, ONE_FILE[0].file_id)
    assert http.get(url, headers={"Authorization": f"Bearer {wot}"}).status_code == 200


# --- Snakemake in wps mode, and no secret anywhere in what it leaves behind -------------------


@pytest.mark.snakemake
@pytest.mark.slow
def test_snakemake_wps_run_downloads_and_leaks_no_token(
    sandbox_factory, tmp_path: Path, user_keys
) -> None:
    sandbox = sandbox_factory(BATCH, env_clients=False)
    workdir = tmp_path / "project"
    workdir.mkdir()
    shutil.copy(user_keys.public_key_path, workdir / "key.pub")
    shutil.copy(user_keys.secret_key_path, workdir / "key.sec")
    run = _snakemake_wps(workdir, sandbox)
    assert run.returncode == 0, run.stderr[-3000:]
    for spec in BATCH:
        path = workdir / "downloads" / f"{spec.file_id}{spec.extension}.c4gh"
        assert (
            decrypted(path, user_keys.secret_key)
            == sandbox.plaintext_path(spec.file_id).read_bytes()
        )
    assert len(wot_requests(sandbox)) >= len(BATCH)  # the secrets below were really in play
    lookups = [
        r
        for r in sandbox.requests.matching(path_prefix=WPS_BASE_PATH, method="GET")
        if "/work-packages/" in r.path and not r.path.endswith("/work-order-tokens")
    ]
    assert len(lookups) == 1  # by the plan; its downloads reuse it: not once per file
    for path in workdir.rglob("*"):  # logs, plan, report, state, .snakemake metadata
        if path.is_file():
            assert_no_secret_in(path.read_bytes().decode("latin-1"), sandbox)
    assert_no_secret_in(run.stdout + run.stderr, sandbox)


def _snakemake_wps(workdir: Path, sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GHGA_WKVS_URL": sandbox.wkvs_url,
        "GHGA_DOWNLOAD_TOKEN": sandbox.download_token,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(REPO / "config/config.yaml"),
        "--cores", "1", "--config", "work_package_source=wps", "part_size=65536",
        "read_timeout=5", "range_retries=2",
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
