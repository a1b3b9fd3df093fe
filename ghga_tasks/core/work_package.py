"""The work package: which files a user may download, and the keys that go with them.

``load_work_package`` is the one swappable entry point. Today it reads environment
variables (CONTRACT.md); the Work Package Service source returns the same type.

Design notes: every ID and extension is validated here, at the edge, because they become
file names; nothing downstream has to worry about path traversal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .keys import parse_public_key

# A leading letter or digit: no hidden files, nothing a command line reads as an option, and
# what the workflow's file_name wildcard accepts. Lengths keep file names under 255 bytes.
FILE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_FILE_ID_LENGTH = 160
MAX_EXTENSION_LENGTH = 60
# One or more ".part" components, each a plain word: ".bam", ".fastq.gz"; or nothing.
EXTENSION_PATTERN = re.compile(r"^(\.[A-Za-z0-9_+-]+)*$")
C4GH_SUFFIX = ".c4gh"
PART_SUFFIX = ".part"

ENV_API_URL = "GHGA_DOWNLOAD_API_URL"
ENV_FILE_IDS = "GHGA_FILE_IDS"
ENV_EXTENSIONS = "GHGA_FILE_EXTENSIONS"
ENV_USER_ID = "GHGA_USER_ID"
ENV_USER_KEY = "GHGA_USER_PUBLIC_KEY"
ENV_GHGA_KEY = "GHGA_PUBLIC_KEY"
ENV_WORK_ORDER_TOKEN = "GHGA_WORK_ORDER_TOKEN"


@dataclass(frozen=True)
class FileSpec:
    """One file of the work package; owns the naming of its outputs."""

    file_id: str
    extension: str  # normalised: "" or starting with a dot

    @property
    def file_name(self) -> str:
        """``<file_id><ext>.c4gh``: the name the downloaded file gets."""
        return f"{self.file_id}{self.extension}{C4GH_SUFFIX}"

    @property
    def part_name(self) -> str:
        """The in-progress name: the full name plus ``.part`` (never ``with_suffix``)."""
        return self.file_name + PART_SUFFIX


@dataclass(frozen=True)
class WorkPackage:
    files: tuple[FileSpec, ...]
    user_id: str
    user_public_key: bytes  # the archive's copy, 32 raw bytes
    ghga_public_key: bytes  # writer key of every genuine envelope
    download_api_url: str
    work_order_token: str | None = field(default=None, repr=False)  # never printed


def validate_file_id(file_id: str, *, setting: str) -> str:
    """Return ``file_id`` if it is safe as a file name: no separators, ``..``, NUL or
    leading dot/dash, at most ``MAX_FILE_ID_LENGTH`` characters."""
    if (
        not FILE_ID_PATTERN.fullmatch(file_id)
        or ".." in file_id
        or len(file_id) > MAX_FILE_ID_LENGTH
    ):
        raise ConfigurationError(
            setting=setting,
            problem=f"{file_id[:80]!r} is not a valid file ID (up to {MAX_FILE_ID_LENGTH} "
            "letters, digits, '.', '_', '-', starting with a letter or digit)",
        )
    return file_id


def normalize_extension(extension: str, *, setting: str) -> str:
    """Accept ``bam`` or ``.bam``; return ``.bam``. Empty stays empty (no extension)."""
    extension = extension.strip()
    if extension and not extension.startswith("."):
        extension = "." + extension
    if not EXTENSION_PATTERN.fullmatch(extension) or len(extension) > MAX_EXTENSION_LENGTH:
        raise ConfigurationError(
            setting=setting, problem=f"{extension[:80]!r} is not a valid file extension"
        )
    return extension


def build_file_specs(
    file_ids: list[str], extensions: list[str], *, ids_setting: str, ext_setting: str
) -> tuple[FileSpec, ...]:
    """Pair IDs with extensions, validating both and rejecting duplicates."""
    if len(file_ids) != len(extensions):
        raise ConfigurationError(
            setting=ext_setting,
            problem=f"has {len(extensions)} items but {ids_setting} has {len(file_ids)}",
        )
    specs: list[FileSpec] = []
    seen: set[str] = set()
    for raw_id, raw_ext in zip(file_ids, extensions, strict=True):
        file_id = validate_file_id(raw_id.strip(), setting=ids_setting)
        if file_id in seen:
            raise ConfigurationError(setting=ids_setting, problem=f"{file_id} is listed twice")
        seen.add(file_id)
        specs.append(FileSpec(file_id, normalize_extension(raw_ext, setting=ext_setting)))
    return tuple(specs)


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(setting=name, problem="is not set")
    return value


def work_package_from_env(environ: Mapping[str, str] | None = None) -> WorkPackage:
    """Read the work package from the ``GHGA_*`` environment variables (CONTRACT.md)."""
    env = os.environ if environ is None else environ
    file_ids = _required(env, ENV_FILE_IDS).split(",")
    # An unset extensions variable is an error; "" for one file means "no extension".
    if ENV_EXTENSIONS not in env:
        raise ConfigurationError(setting=ENV_EXTENSIONS, problem="is not set")
    extensions = env[ENV_EXTENSIONS].split(",")
    api_url = _required(env, ENV_API_URL).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigurationError(setting=ENV_API_URL, problem=f"{api_url!r} is not an http(s) URL")
    return WorkPackage(
        files=build_file_specs(
            file_ids, extensions, ids_setting=ENV_FILE_IDS, ext_setting=ENV_EXTENSIONS
        ),
        user_id=_required(env, ENV_USER_ID),
        user_public_key=parse_public_key(_required(env, ENV_USER_KEY), setting=ENV_USER_KEY),
        ghga_public_key=parse_public_key(_required(env, ENV_GHGA_KEY), setting=ENV_GHGA_KEY),
        download_api_url=api_url,
        work_order_token=env.get(ENV_WORK_ORDER_TOKEN) or None,
    )
