"""Shared fixtures: the sandbox ones live in sandbox_fixtures.py (owned with the sandbox)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ghga_tasks.core.settings import Settings
from ghga_tasks.core.work_package import WorkPackage, work_package_from_env
from ghga_tasks.sandbox import Sandbox

pytest_plugins = ["sandbox_fixtures"]


@pytest.fixture
def fast_settings(tmp_path: Path, user_keys) -> Settings:
    """Settings for tests: small ranges (several per file), short timeouts and retries."""
    return Settings(
        output_dir=tmp_path / "downloads",
        user_public_key=user_keys.public_key_path,
        user_private_key=user_keys.secret_key_path,
        part_size=64 * 1024,
        connections=4,
        max_wait_time=30,
        connect_timeout=5,
        read_timeout=5,
        download_api_timeout=5,
        range_retries=2,
    )


def package_of(sandbox: Sandbox, **overrides: str) -> WorkPackage:
    return work_package_from_env({**sandbox.env(), **overrides})


@pytest.fixture
def project(tmp_path: Path, user_keys) -> Path:
    """A researcher's project directory: their key pair (key.pub, key.sec), nothing else."""
    directory = tmp_path / "project"
    directory.mkdir()
    shutil.copy(user_keys.public_key_path, directory / "key.pub")
    shutil.copy(user_keys.secret_key_path, directory / "key.sec")
    return directory
