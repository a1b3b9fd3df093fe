"""The work package from GHGA's Work Package Service (``work_package_source: wps``).

    resolve_wkvs_url, fetch_well_known_values   GET {wkvs_url}/values: where the APIs are
    download_token_from                         GHGA_DOWNLOAD_TOKEN, download_token_file,
                                                or a caller's prompt (the click CLI's)
    WorkPackageClient                           GET  {wps}/work-packages/{id}
                                                POST {wps}/work-packages/{id}/files/{acc}/
                                                     work-order-tokens
    WorkOrderTokens                             a work order token (WOT) per file, reused
                                                for less than its life, key-checked
    WorkOrderDownloadApi                        the DownloadApi with a WOT on every call,
                                                fetched afresh once on 401/403
    work_package_from_wps                       all of it -> WpsWorkPackage

Design notes:

- Protocol: ``docs/protocol.md``. The result is the same :class:`WorkPackage` the
  env source returns, so planning and downloading do not know where it came from.
- Every WOT's ``user_public_crypt4gh_key`` claim is compared with the user's key file
  (:mod:`ghga_tasks.core.tokens` explains why the official client's check never runs).
  The first WOT is fetched while loading, so a mismatch stops the run before any probe.
- Secrets (download token, access token, private key, WOTs) live only in objects whose
  ``repr`` hides them; no log line or error message includes them. Every process that
  loads the work package (Snakemake, whose jobs are threads; a step process on a
  cluster) reads the token again from the environment or the file: it never travels on
  a command line or through ``settings.json``.
- A WOT lives 30 s. We reuse one for its lifetime minus :data:`WOT_SAFETY_MARGIN`,
  measured on our monotonic clock from *before* we asked, so neither clock skew nor a
  slow answer makes us send an expired one; a 401/403 anyway gets one fresh try.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from .api import (
    DownloadApi,
    ProbeResult,
    describe,
    error_reason,
    insecure_url_problem,
    make_session,
)
from .errors import (
    ApiError,
    AuthorizationError,
    ConfigurationError,
    PublicKeyMismatch,
    Unreachable,
)
from .keys import parse_public_key, read_public_key_file
from .settings import Settings
from .tokens import (
    ClaimsError,
    DownloadToken,
    SealedBoxError,
    WorkOrderClaims,
    open_sealed,
    parse_download_token,
    read_private_key,
    read_work_order_claims,
)
from .work_package import FileSpec, WorkPackage, build_file_specs, dotted_extension

log = logging.getLogger(__name__)

ENV_DOWNLOAD_TOKEN = "GHGA_DOWNLOAD_TOKEN"
ENV_WKVS_URL = "GHGA_WKVS_URL"
ENV_KEY_PASSPHRASE = "GHGA_KEY_PASSPHRASE"
DEFAULT_WKVS_URL = "https://data.ghga.de/.well-known"
# Only what a download needs. ``crypt4gh_public_keys`` is there too, but it holds the data
# hubs' upload keys, not the key GHGA writes envelopes with (docs/protocol.md).
REQUIRED_VALUES = ("wps_api_url", "dcs_api_url")
WOT_SAFETY_MARGIN = 10.0  # seconds of a WOT's life we never use (30 s life -> 20 s reuse)

T = TypeVar("T")
Timeout = tuple[float, float]


# --- where things come from ---------------------------------------------------------------


def resolve_wkvs_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """The config key ``wkvs_url`` if set, else ``GHGA_WKVS_URL``, else GHGA's own."""
    setting = "wkvs_url" if settings.wkvs_url else ENV_WKVS_URL
    url = (settings.wkvs_url or environ.get(ENV_WKVS_URL, "")).strip() or DEFAULT_WKVS_URL
    # The access token goes to the URLs found there: the same https rule as for downloads.
    problem = insecure_url_problem(url, allow_http=settings.allow_http)
    if problem:
        raise ConfigurationError(setting=setting, problem=problem)
    return url.rstrip("/")


def download_token_from(
    settings: Settings, environ: Mapping[str, str], ask: Callable[[], str] | None = None
) -> DownloadToken:
    """The download token: ``download_token_file`` if configured, else the environment,
    else ``ask()`` (the click CLI passes a hidden prompt; Snakemake jobs pass nothing)."""
    if settings.download_token_file:
        path = Path(settings.download_token_file)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigurationError(
                setting="download_token_file", problem=f"cannot read {path} ({error.strerror})"
            ) from None
        if path.stat().st_mode & 0o077:
            log.warning("%s can be read by other users; consider chmod 600", path)
        return parse_download_token(text, source=f"download_token_file ({path})")
    if environ.get(ENV_DOWNLOAD_TOKEN, "").strip():
        return parse_download_token(environ[ENV_DOWNLOAD_TOKEN], source=ENV_DOWNLOAD_TOKEN)
    if ask is not None:
        return parse_download_token(ask(), source="the pasted download token")
    raise ConfigurationError(
        setting=ENV_DOWNLOAD_TOKEN,
        problem="is not set; put the download token from the GHGA data portal in it, "
        "or in a file named by the config key download_token_file",
    )


def private_key_for_tokens(
    settings: Settings, environ: Mapping[str, str], ask: Callable[[], str] | None = None
) -> bytes:
    """The user's private key; a locked one is opened with ``GHGA_KEY_PASSPHRASE`` or ``ask``."""
    passphrase = environ.get(ENV_KEY_PASSPHRASE)
    source = (lambda: passphrase) if passphrase else ask
    return read_private_key(settings.user_private_key, source, setting="user_private_key")


def configured_ghga_public_key(settings: Settings) -> bytes | None:
    """GHGA's central key from the ``ghga_public_key`` setting (key text or a key file), or
    None when it is empty: GHGA does not publish that key, so most users have none."""
    value = settings.ghga_public_key.strip()
    if not value:
        return None
    if "\n" not in value and Path(value).is_file():
        return read_public_key_file(Path(value), setting="ghga_public_key")
    return parse_public_key(value, setting="ghga_public_key")


def open_download_token(token: DownloadToken, private_key: bytes, key_file: Path) -> str:
    """The plaintext access token sealed inside the download token."""
    try:
        return open_sealed(token.sealed_access_token, private_key)
    except SealedBoxError as error:
        raise ConfigurationError(
            setting="user_private_key",
            problem=f"{key_file} cannot open the download token ({error}); use the private key "
            "of the key pair whose public key you gave the GHGA data portal",
        ) from None


# --- HTTP ---------------------------------------------------------------------------------


def wps_session(*, retries: int) -> requests.Session:
    """Like the Download API session, but POST is retried too: asking for a work order
    token twice only mints two tokens, it changes nothing else."""
    return make_session(retries=retries, retried_methods=frozenset({"GET", "POST"}))


def _send(
    session: requests.Session, method: str, url: str, *, timeout: Timeout, bearer: str = ""
) -> requests.Response:
    headers = {"Accept": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        return session.request(method, url, headers=headers, timeout=timeout)
    except requests.RequestException as error:
        raise Unreachable(url=url, problem=describe(error)) from error


def _json_body(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            url=url, status_code=response.status_code, problem="answer is not JSON"
        ) from None


# --- well-known values --------------------------------------------------------------------


@dataclass(frozen=True)
class WellKnownValues:
    wps_api_url: str
    dcs_api_url: str


def fetch_well_known_values(
    session: requests.Session, wkvs_url: str, *, timeout: Timeout, allow_http: bool = False
) -> WellKnownValues:
    """``GET {wkvs_url}/values``: where the WPS and the DCS are.

    Plain http URLs in the answer are refused unless to loopback or ``allow_http``."""
    url = f"{wkvs_url}/values"
    response = _send(session, "GET", url, timeout=timeout)
    if response.status_code >= 500:
        raise ApiError(
            url=url,
            status_code=response.status_code,
            problem=f"no well-known values ({error_reason(response)})",
        )
    if response.status_code != 200:  # a 404 page, another service: the URL is wrong
        raise _not_the_wkvs(wkvs_url, f"HTTP {response.status_code} from {url}")
    try:
        body = response.json()
    except ValueError:
        raise _not_the_wkvs(wkvs_url, f"{url} did not answer JSON") from None
    missing = [name for name in REQUIRED_VALUES if not isinstance(body, dict) or name not in body]
    if missing:
        raise _not_the_wkvs(wkvs_url, f"its values lack {', '.join(missing)}")
    return WellKnownValues(
        wps_api_url=_url_value(body, "wps_api_url", url, allow_http),
        dcs_api_url=_url_value(body, "dcs_api_url", url, allow_http),
    )


def _not_the_wkvs(wkvs_url: str, answer: str) -> ConfigurationError:
    return ConfigurationError(
        setting="wkvs_url",
        problem=f"{wkvs_url} is not GHGA's well-known values service ({answer}); check the URL",
    )


def _url_value(values: dict[str, Any], name: str, url: str, allow_http: bool) -> str:
    value = values[name]
    if not isinstance(value, str):
        raise ApiError(url=url, problem=f"the well-known value {name} is not a URL")
    problem = insecure_url_problem(value, allow_http=allow_http)
    if problem:
        raise ApiError(url=url, problem=f"the well-known value {name}: {problem}")
    return value.rstrip("/")


# --- the Work Package API -----------------------------------------------------------------


class WorkPackageClient:
    """One work package at the WPS, opened with its access token."""

    def __init__(
        self,
        wps_url: str,
        work_package_id: str,
        *,
        access_token: str,
        private_key: bytes,
        session: requests.Session,
        timeout: Timeout,
    ) -> None:
        self.package_url = f"{wps_url}/work-packages/{work_package_id}"
        self._access_token = access_token
        self._private_key = private_key
        self._session = session
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"WorkPackageClient({self.package_url!r})"  # never the tokens or the key

    def fetch_files(self) -> tuple[FileSpec, ...]:
        """``GET /work-packages/{id}``: the files and their extensions, in the WPS's order."""
        response = self._send("GET", self.package_url)
        if response.status_code in (401, 403):
            raise AuthorizationError(
                url=self.package_url,
                status_code=response.status_code,
                problem=f"no access to the work package: {error_reason(response)}; "
                "a new download token from the GHGA data portal may help",
            )
        if response.status_code != 200:
            raise ApiError(
                url=self.package_url,
                status_code=response.status_code,
                problem=f"cannot read the work package: {error_reason(response)}",
            )
        return _file_specs(_json_body(response, self.package_url), self.package_url)

    def fetch_work_order_token(self, file_id: str) -> tuple[str, WorkOrderClaims]:
        """``POST …/files/{id}/work-order-tokens``: a fresh WOT, opened, and its claims."""
        url = f"{self.package_url}/files/{file_id}/work-order-tokens"
        response = self._send("POST", url)
        if response.status_code in (401, 403):
            raise AuthorizationError(
                url=url,
                file_id=file_id,
                status_code=response.status_code,
                problem=f"no work order token: {error_reason(response)}",
            )
        body = _json_body(response, url)
        if response.status_code != 201 or not isinstance(body, str) or not body:
            raise ApiError(
                url=url,
                file_id=file_id,
                status_code=response.status_code,
                problem="no work order token in the answer",
            )
        try:
            token = open_sealed(body, self._private_key)
            return token, read_work_order_claims(token)
        except (SealedBoxError, ClaimsError) as error:
            raise ApiError(
                url=url, file_id=file_id, problem=f"unusable work order token: it {error}"
            ) from None

    def _send(self, method: str, url: str) -> requests.Response:
        return _send(self._session, method, url, timeout=self._timeout, bearer=self._access_token)


def _file_specs(body: Any, url: str) -> tuple[FileSpec, ...]:
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, dict):
        raise ApiError(url=url, problem="the work package lists no files (not a download package?)")
    return build_file_specs(
        [str(file_id) for file_id in files],
        [dotted_extension(str(extension or "")) for extension in files.values()],
        ids_setting="the work package's file IDs",
        ext_setting="the work package's file extensions",
    )


# --- work order tokens --------------------------------------------------------------------


@dataclass(frozen=True)
class _Reusable:
    token: str = field(repr=False)
    reuse_until: float  # on our monotonic clock


class WorkOrderTokens:
    """Hands out a WOT per file: reused while young, checked against the user's key."""

    def __init__(
        self,
        client: WorkPackageClient,
        *,
        user_public_key: bytes,
        key_file: Path,
        clock: Callable[[], float] = time.monotonic,
        safety_margin: float = WOT_SAFETY_MARGIN,
    ) -> None:
        self._client = client
        self._user_public_key = user_public_key
        self._key_file = key_file
        self._clock = clock
        self._safety_margin = safety_margin
        self._reusable: dict[str, _Reusable] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WorkOrderTokens({self._client!r})"

    def token_for(self, file_id: str) -> str:
        """A WOT for ``file_id``: the cached one while young enough, else a fresh one."""
        asked_at = self._clock()
        with self._lock:
            cached = self._reusable.get(file_id)
        if cached is not None and asked_at < cached.reuse_until:
            return cached.token
        token, claims = self._client.fetch_work_order_token(file_id)
        self._check(file_id, claims)
        reuse_for = claims.lifetime - self._safety_margin
        with self._lock:
            if reuse_for > 0:
                self._reusable[file_id] = _Reusable(token, asked_at + reuse_for)
            else:
                self._reusable.pop(file_id, None)
        return token

    def discard(self, file_id: str) -> None:
        """Forget the cached WOT of ``file_id`` (the Download API refused it)."""
        with self._lock:
            self._reusable.pop(file_id, None)

    def _check(self, file_id: str, claims: WorkOrderClaims) -> None:
        # The DCS encrypts the envelope to this claim: if it is not the user's key,
        # every byte we download would be unreadable for them.
        if not hmac.compare_digest(claims.user_public_key, self._user_public_key):
            raise PublicKeyMismatch(key_file=str(self._key_file))
        if claims.accession is not None and claims.accession != file_id:
            raise ApiError(
                url=self._client.package_url,
                file_id=file_id,
                problem=f"the work order token is for another file ({claims.accession})",
            )


_REFUSALS = {401: "invalid or expired", 403: "not valid for this file"}


class WorkOrderDownloadApi(DownloadApi):
    """The Download API with a WOT on every call; a refused WOT gets one fresh retry."""

    def __init__(
        self,
        base_url: str,
        tokens: WorkOrderTokens,
        *,
        session: requests.Session | None = None,
        timeout: Timeout = (10.0, 60.0),
        allow_http: bool = False,
        url_setting: str = "dcs_api_url",
    ) -> None:
        super().__init__(
            base_url,
            session=session,
            token_for=tokens.token_for,
            timeout=timeout,
            allow_http=allow_http,
            url_setting=url_setting,
        )
        self._tokens = tokens

    def probe_object(self, file_id: str) -> ProbeResult:
        return self._refreshing_once(file_id, super().probe_object)

    def fetch_envelope(self, file_id: str) -> bytes:
        return self._refreshing_once(file_id, super().fetch_envelope)

    def _refreshing_once(self, file_id: str, call: Callable[[str], T]) -> T:
        try:
            return call(file_id)
        except AuthorizationError as refused:
            if not refused.url.startswith(self.base_url):
                raise  # the WPS said no: another token would not change its mind
            log.info(
                "%s: work order token refused (HTTP %s); asking for a fresh one",
                file_id,
                refused.status_code,
            )
            self._tokens.discard(file_id)
        try:
            return call(file_id)
        except AuthorizationError as again:
            if not again.url.startswith(self.base_url):
                raise
            reason = _REFUSALS.get(again.status_code or 0, "refused")
            raise AuthorizationError(
                url=again.url,
                file_id=file_id,
                status_code=again.status_code,
                problem=f"the Download API refused a fresh work order token too ({reason})",
            ) from again


# --- putting it together ------------------------------------------------------------------


@dataclass(frozen=True)
class WpsWorkPackage(WorkPackage):
    """A work package from the WPS: the common fields plus the WOT source."""

    work_order_tokens: WorkOrderTokens | None = field(default=None, repr=False, compare=False)


def work_package_from_wps(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    ask_token: Callable[[], str] | None = None,
    ask_passphrase: Callable[[], str] | None = None,
) -> WpsWorkPackage:
    """Open the download token, look the work package up, check the key with a first WOT."""
    env = os.environ if environ is None else environ
    token = download_token_from(settings, env, ask_token)
    private_key = private_key_for_tokens(settings, env, ask_passphrase)
    access_token = open_download_token(token, private_key, settings.user_private_key)
    user_public_key = read_public_key_file(settings.user_public_key)
    session = wps_session(retries=settings.range_retries)
    timeout = (settings.connect_timeout, settings.read_timeout)
    values = fetch_well_known_values(
        session, resolve_wkvs_url(settings, env), timeout=timeout, allow_http=settings.allow_http
    )
    client = WorkPackageClient(
        values.wps_api_url,
        token.work_package_id,
        access_token=access_token,
        private_key=private_key,
        session=session,
        timeout=timeout,
    )
    files = client.fetch_files()
    tokens = WorkOrderTokens(
        client, user_public_key=user_public_key, key_file=settings.user_public_key
    )
    check_key_with_first_token(tokens, files)
    log.info("work package %s: %d file(s)", token.work_package_id, len(files))
    return WpsWorkPackage(
        files=files,
        user_id="unknown",  # the WPS does not say; nothing downstream needs it
        user_public_key=user_public_key,  # equal to every WOT's claim so far (checked)
        ghga_public_key=configured_ghga_public_key(settings),
        ghga_public_key_setting="ghga_public_key",
        download_api_url_setting="dcs_api_url of the well-known values (wkvs_url)",
        download_api_url=values.dcs_api_url,
        work_order_tokens=tokens,
    )


def check_key_with_first_token(tokens: WorkOrderTokens, files: tuple[FileSpec, ...]) -> None:
    """Fetch one work order token before any probe: ``PublicKeyMismatch`` unless the
    archive's copy of the user's key is the key file's. A file GHGA refuses a token for
    ("File not available for download") is that file's outcome (the plan says so), so
    the next file is tried."""
    for spec in files:
        try:
            tokens.token_for(spec.file_id)
            return
        except AuthorizationError as refused:
            log.info("%s: %s", spec.file_id, refused)
    log.warning("no file of the work package got a work order token; nothing to download")


def work_order_download_api(work_package: WpsWorkPackage, settings: Settings) -> DownloadApi:
    """The Download API client for a WPS work package (one WOT per call)."""
    if work_package.work_order_tokens is None:
        raise ValueError("a WpsWorkPackage needs its work_order_tokens")
    return WorkOrderDownloadApi(
        work_package.download_api_url,
        work_package.work_order_tokens,
        session=make_session(retries=settings.range_retries),
        timeout=(settings.connect_timeout, settings.download_api_timeout),
        allow_http=settings.allow_http,
        url_setting=work_package.download_api_url_setting,
    )
