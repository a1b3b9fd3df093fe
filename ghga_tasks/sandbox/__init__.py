"""A local GHGA-compatible Download API and object store, for tests and demos.

Serves the Well-Known Value Service, the Work Package Service, the Download Controller
(GA4GH DRS) API and an S3-like outbox with presigned, expiring URLs on loopback, with real
Crypt4GH content and injectable faults. It behaves as production GHGA by default
(``docs/protocol.md``); see :mod:`ghga_tasks.sandbox.server` for the two relaxations a
test may ask for. Typical use::

    with Sandbox(files=DEFAULT_FILES, user_public_key=pk) as sandbox:
        env = sandbox.env()          # GHGA_* variables for a client (wps: WKVS + token)
"""

from ghga_tasks.sandbox.app import RequestLog, RequestRecord, Router
from ghga_tasks.sandbox.dcs import DCS_BASE_PATH, AuthContext, AuthPolicy, optional_bearer
from ghga_tasks.sandbox.faults import Faults, InjectedFault
from ghga_tasks.sandbox.files import (
    ENVELOPE_SIZE,
    SandboxFile,
    StoredFile,
    encrypted_size,
    guard_crypt4gh_key_logs,
)
from ghga_tasks.sandbox.server import (
    DEFAULT_FILES,
    FAST_RETRY_AFTER_MIN,
    Sandbox,
    UserKeyFiles,
    build_app,
    ensure_user_keypair,
    format_env,
    parse_file_specs,
    parse_size,
    sandbox_file_id,
    serve,
)

__all__ = [
    "DCS_BASE_PATH",
    "DEFAULT_FILES",
    "ENVELOPE_SIZE",
    "FAST_RETRY_AFTER_MIN",
    "AuthContext",
    "AuthPolicy",
    "Faults",
    "InjectedFault",
    "RequestLog",
    "RequestRecord",
    "Router",
    "Sandbox",
    "SandboxFile",
    "StoredFile",
    "UserKeyFiles",
    "build_app",
    "encrypted_size",
    "ensure_user_keypair",
    "format_env",
    "guard_crypt4gh_key_logs",
    "optional_bearer",
    "parse_file_specs",
    "parse_size",
    "sandbox_file_id",
    "serve",
]
