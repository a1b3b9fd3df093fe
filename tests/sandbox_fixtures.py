"""Reusable pytest fixtures for tests that need a running GHGA sandbox.

Load them with ``pytest_plugins = ["sandbox_fixtures"]`` (a test module or the root
conftest). ``sandbox_factory(files=..., **sandbox_kwargs)`` builds a :class:`Sandbox` in
``tmp_path`` for the generated user key pair, starts it and stops it after the test.
Unlike a bare :class:`Sandbox`, it serves env-mode clients and answers staging quickly
unless the test says otherwise (``env_clients=False``, ``retry_after_min=5``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from crypt4gh.keys import get_private_key

from ghga_tasks.sandbox import (
    DEFAULT_FILES,
    FAST_RETRY_AFTER_MIN,
    Sandbox,
    SandboxFile,
    ensure_user_keypair,
)
from ghga_tasks.sandbox.files import public_key_of


@dataclass(frozen=True)
class UserKeys:
    """The test user's Crypt4GH key pair, as raw bytes and as key files."""

    public_key: bytes
    secret_key: bytes
    public_key_path: Path
    secret_key_path: Path


SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def user_keys(tmp_path: Path) -> UserKeys:
    """An unencrypted key pair in ``tmp_path/keys`` (``key.pub``, ``key.sec``)."""
    files = ensure_user_keypair(tmp_path / "keys")
    secret_key = bytes(get_private_key(str(files.secret_key_path), lambda: ""))
    assert public_key_of(secret_key) == files.public_key
    return UserKeys(files.public_key, secret_key, files.public_key_path, files.secret_key_path)


@pytest.fixture
def sandbox_factory(tmp_path: Path, user_keys: UserKeys) -> Iterator[SandboxFactory]:
    """Build and start sandboxes for the test; all are stopped afterwards."""
    started: list[Sandbox] = []

    def make(files: Sequence[SandboxFile] = DEFAULT_FILES, **kwargs: Any) -> Sandbox:
        kwargs.setdefault("user_public_key", user_keys.public_key)
        kwargs.setdefault("workdir", tmp_path / f"sandbox-{len(started)}")
        # Most tests exercise the env work package source (no work order tokens, which
        # production GHGA would refuse) and must stay fast (GHGA asks staging clients to
        # wait 5 s at least). A test that wants production behaviour overrides these.
        kwargs.setdefault("env_clients", True)
        kwargs.setdefault("retry_after_min", FAST_RETRY_AFTER_MIN)
        sandbox = Sandbox(files=files, **kwargs)
        started.append(sandbox)
        return sandbox.start()

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session that ignores proxy variables (the sandbox is on loopback)."""
    with requests.Session() as session:
        session.trust_env = False
        yield session
