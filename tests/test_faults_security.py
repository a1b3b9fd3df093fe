"""Security scenarios: hostile names, plain http, untrusted TLS, secrets in verbose logs,
and where the sandbox listens. Same promise and figures as ``test_faults.py``."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from reliability.scenario import (
    Batch,
    Run,
    assert_promise_kept,
    check_promise,
    decrypts_to,
    invoke,
    record,
    suite_settings,
)

from ghga_tasks.core.api import insecure_url_problem
from ghga_tasks.core.work_package import FileSpec
from ghga_tasks.sandbox import SandboxFile
from ghga_tasks.sandbox.faults import Faults

SECURITY = "security"
BATCH = [
    SandboxFile("GHGAF1", ".bam", size=100_000),
    SandboxFile("GHGAF2", "", size=20_000),
]
NOT_LOOPBACK = "http://192.0.2.10:8080"  # TEST-NET-1: never routed, never contacted


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GHGA_FILE_IDS", "../../etc/passwd,GHGAF2"),  # parent directories
        ("GHGA_FILE_IDS", "/etc/passwd,GHGAF2"),  # an absolute path
        ("GHGA_FILE_IDS", "a/b,GHGAF2"),  # a separator
        ("GHGA_FILE_IDS", "-rf,GHGAF2"),  # an option to whatever reads the name
    ],
    ids=["dotdot", "absolute", "separator", "dash"],
)
def test_hostile_names_are_refused_before_anything_is_written(
    variable, value, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """(NUL cannot travel in an environment variable; test_properties.py feeds it to the
    same validation from the plan file and the other parsers.)"""
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    batch = Batch(sandbox, settings, env_overrides={variable: value})
    run = batch.download_planned()
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario=f"{variable}={value}", area=SECURITY, run=run,
           promise=promise)  # fmt: skip
    assert run.exit_code == 2 and variable in run.user_sees
    assert sandbox.requests.snapshot() == []
    assert not settings.output_dir.exists()
    assert not (tmp_path / "etc").exists()


def test_hostile_extension_gets_a_safe_name_inside_the_output_directory(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """Extensions come from submitted file names, so they are never refused: mapped."""
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    hostile = ".bam/../../x"
    run = Batch(sandbox, settings, env_overrides={"GHGA_FILE_EXTENSIONS": f"{hostile},"})
    outcome = run.download_planned()
    safe_name = FileSpec("GHGAF1", hostile).file_name
    promise = check_promise(
        settings.output_dir, sandbox, user_keys.secret_key, [outcome.output], ignore={safe_name}
    )
    record(record_property, scenario=f"GHGA_FILE_EXTENSIONS={hostile}", area=SECURITY,
           run=outcome, promise=promise)  # fmt: skip
    assert outcome.exit_code == 0, outcome.output[-2000:]
    assert safe_name == "GHGAF1.bam_.__.__x.c4gh"
    assert sorted(p.name for p in settings.output_dir.glob("*.c4gh")) == [safe_name, "GHGAF2.c4gh"]
    assert decrypts_to(
        settings.output_dir / safe_name, user_keys.secret_key, sandbox.plaintext_path("GHGAF1")
    )
    assert not (tmp_path / "x.c4gh").exists()  # where the unmapped name would have led
    assert_promise_kept(promise)


def test_plain_http_api_on_another_host_is_refused(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """No request leaves the machine: the token would travel readable."""
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys)
    api_url = f"{NOT_LOOPBACK}/ga4gh/drs/v1"
    run = Batch(sandbox, settings, env_overrides={"GHGA_DOWNLOAD_API_URL": api_url}).plan()
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="Download API URL is plain http to another host",
           area=SECURITY, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 2 and "plain http" in run.user_sees and "allow_http" in run.user_sees
    assert_promise_kept(promise)


def test_plain_http_download_url_on_another_host_is_refused(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """The Download API hands out http:// object URLs for another host: never fetched."""
    sandbox = sandbox_factory(BATCH)
    sandbox.archive.object_base_url = NOT_LOOPBACK
    settings = suite_settings(tmp_path, user_keys)
    run = Batch(sandbox, settings).download_planned()
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="download URL is plain http to another host",
           area=SECURITY, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 1 and "download URL" in run.user_sees
    assert "signature" not in run.user_sees  # the presigned query is never shown
    assert_promise_kept(promise)


@pytest.mark.parametrize(
    ("url", "allow_http", "allowed"),
    [
        ("https://data.ghga.de/api", False, True),  # https anywhere
        ("http://127.0.0.1:8080/x", False, True),  # loopback
        ("http://[::1]:8080/x", False, True),  # loopback, IPv6
        ("http://localhost/x", False, True),  # loopback by name
        ("http://data.ghga.de/api", False, False),  # plain http over the network
        ("http://data.ghga.de/api", True, True),  # ... unless the user allows it
        ("ftp://data.ghga.de/x", True, False),  # not http(s) at all
        ("https:///nohost", False, False),  # no host
    ],
)
def test_url_policy(url: str, allow_http: bool, allowed: bool) -> None:
    assert (insecure_url_problem(url, allow_http=allow_http) == "") is allowed


@pytest.fixture
def untrusted_tls_server(tmp_path: Path) -> Iterator[str]:
    """An https server on loopback with a self-signed certificate nobody trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/ga4gh/drs/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_tls_certificate_is_refused(
    untrusted_tls_server, sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    sandbox = sandbox_factory(BATCH)
    settings = suite_settings(tmp_path, user_keys, range_retries=1)
    env = {"GHGA_DOWNLOAD_API_URL": untrusted_tls_server}
    run = Batch(sandbox, settings, env_overrides=env).plan()
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [run.output])
    record(record_property, scenario="Download API with a self-signed TLS certificate",
           area=SECURITY, run=run, promise=promise)  # fmt: skip
    assert run.exit_code == 1 and "TLS failed" in run.user_sees
    assert_promise_kept(promise)


def test_verbose_run_with_failures_prints_no_secret(
    sandbox_factory, user_keys, tmp_path, record_property
) -> None:
    """``-v`` (debug logs, tracebacks) through a retried range and a decrypt-verify
    failure: the token, keys, session keys and URL signatures never appear."""
    sandbox = sandbox_factory(BATCH)
    sandbox.set_faults("GHGAF1", Faults(flip_byte_at=5_000, flip_times=1))  # fails: exit 5
    retried = sandbox.set_faults("GHGAF2", Faults(drop_after_bytes=2_000, drop_times=2))
    settings = suite_settings(tmp_path, user_keys, verify=True)
    batch = Batch(sandbox, settings)
    planned = invoke(["-v", "step", "plan", "--settings", settings.to_json()], batch.env)
    runs = [
        invoke(["-v", "step", "download", "--settings", str(path), name], batch.env)
        for path in [settings.output_dir / ".ghga_tasks/settings.json"]
        for name in ("GHGAF1.bam.c4gh", "GHGAF2.c4gh")
    ]
    output = "\n".join(run.output for run in [planned, *runs])
    run = Run(runs[0].exit_code, output, runs[0].user_sees)
    promise = check_promise(settings.output_dir, sandbox, user_keys.secret_key, [output])
    record(record_property, scenario="verbose logs (-v) through failures and retries",
           area=SECURITY, run=run, promise=promise)  # fmt: skip
    assert "Traceback" in output  # the verbose error path really ran
    assert run.exit_code == 5 and retried.counts["drop"] > 0 and runs[1].exit_code == 0
    assert_promise_kept(promise)


def test_sandbox_listens_on_loopback_only(sandbox_factory, user_keys, tmp_path, record_property):
    sandbox = sandbox_factory(BATCH)
    host = sandbox.base_url.split("//")[1].rsplit(":", 1)[0]
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5):
        pass
    run = Run(0, sandbox.base_url, f"serving on {sandbox.base_url}")
    promise = check_promise(tmp_path / "nothing", sandbox, user_keys.secret_key, [])
    record(record_property, scenario="the sandbox's default address", area=SECURITY, run=run,
           promise=promise)  # fmt: skip
    assert host == "127.0.0.1"


@pytest.mark.parametrize("allow_http", [False, True])
def test_allow_http_is_the_only_way_to_plain_http_on_the_network(
    allow_http: bool, sandbox_factory, user_keys, tmp_path
) -> None:
    """The setting reaches the Download API client of an env work package."""
    from conftest import package_of

    from ghga_tasks.core.batch import download_api
    from ghga_tasks.core.errors import ConfigurationError

    sandbox = sandbox_factory(BATCH)
    package = package_of(sandbox, GHGA_DOWNLOAD_API_URL=f"{NOT_LOOPBACK}/ga4gh/drs/v1")
    settings = suite_settings(tmp_path, user_keys, allow_http=allow_http)
    if allow_http:
        assert download_api(package, settings).base_url.startswith(NOT_LOOPBACK)
    else:
        with pytest.raises(ConfigurationError, match="allow_http"):
            download_api(package, settings)
