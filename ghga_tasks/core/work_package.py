"""The work package: which files a user may download, and the keys that go with them.

``load_work_package`` is the one swappable entry point. Today it reads environment
variables (README); the Work Package Service source returns the same type.

Design notes: IDs and extensions become file names, so they are settled here, at the edge,
and nothing downstream has to worry about path traversal. A file ID must be a plain name
(else the work package is refused: GHGA's accessions always are). An extension is whatever
GHGA derived from the submitted file name (spaces, brackets, non-ASCII letters: anything),
so it is never refused: :func:`safe_extension` maps it to the characters file names here
use (docs/output.md, "File names"); the plan shows the original next to the name.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .keys import parse_public_key

# A leading letter or digit: no hidden files, nothing a command line reads as an option, and
# what the workflow's file_name wildcard accepts. Lengths keep file names under 255 bytes.
FILE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_FILE_ID_LENGTH = 160
MAX_EXTENSION_LENGTH = 60  # of the safe form: names stay far below 255 bytes
SAFE_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._+-")
UNSAFE_REPLACEMENT = "_"
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
    extension: str  # as the archive gave it: "" or starting with a dot

    @property
    def file_name(self) -> str:
        """``<file_id><safe ext>.c4gh``: the name the downloaded file gets."""
        return f"{self.file_id}{safe_extension(self.extension)}{C4GH_SUFFIX}"

    @property
    def part_name(self) -> str:
        """The in-progress name: the full name plus ``.part`` (never ``with_suffix``)."""
        return self.file_name + PART_SUFFIX


@dataclass(frozen=True)
class WorkPackage:
    files: tuple[FileSpec, ...]
    user_id: str
    user_public_key: bytes  # the archive's copy, 32 raw bytes
    # GHGA's central key, when the user gave it: every envelope must then be written with
    # it. None: nothing to compare with, the writer key is only recorded (core/envelope.py).
    ghga_public_key: bytes | None
    download_api_url: str
    work_order_token: str | None = field(default=None, repr=False)  # never printed
    ghga_public_key_setting: str = ENV_GHGA_KEY  # where ghga_public_key came from
    download_api_url_setting: str = ENV_API_URL  # where download_api_url came from


def validate_file_id(file_id: str, *, setting: str) -> str:
    """Return ``file_id`` if it is safe as a file name: no separators, ``..``, NUL or
    leading dot/dash, at most ``MAX_FILE_ID_LENGTH`` characters."""
    if (
        not FILE_ID_PATTERN.fullmatch(file_id)
        or ".." in file_id
        or file_id.endswith(".")  # the extension's dot would make ".."
        or len(file_id) > MAX_FILE_ID_LENGTH
    ):
        raise ConfigurationError(
            setting=setting,
            problem=f"{file_id[:80]!r} is not a valid file ID (up to {MAX_FILE_ID_LENGTH} "
            "letters, digits, '.', '_', '-', starting with a letter or digit)",
        )
    return file_id


def safe_extension(extension: str) -> str:
    """The extension as it appears in file names: deterministic, and safe in any shell,
    file system or Snakemake pattern.

    The result is cut at ``MAX_EXTENSION_LENGTH`` characters, then each character outside
    ``A-Z a-z 0-9 . _ + -`` becomes ``_``, and so does a dot right after another dot or
    at the end (``.c4gh`` follows: no ``..`` anywhere in the name). ``".0 final"`` ->
    ``".0_final"``, ``".äö"`` -> ``".__"``, ``".tar.gz"`` and ``".bam"`` unchanged.
    """
    safe: list[str] = []
    cut = extension[:MAX_EXTENSION_LENGTH]
    for index, character in enumerate(cut):
        stray_dot = character == "." and (safe[-1:] == ["."] or index == len(cut) - 1)
        unsafe = character not in SAFE_NAME_CHARACTERS or stray_dot
        safe.append(UNSAFE_REPLACEMENT if unsafe else character)
    return "".join(safe)


def dotted_extension(extension: str) -> str:
    """``bam`` or ``.bam`` -> ``.bam``; empty stays empty (no extension). Kept otherwise
    exactly as given: it is the archive's name for the file type."""
    return extension if not extension or extension.startswith(".") else "." + extension


def typed_extension(extension: str) -> str:
    """An extension a user typed (``GHGA_FILE_EXTENSIONS``): stripped, with its dot."""
    return dotted_extension(extension.strip())


def build_file_specs(
    file_ids: list[str], extensions: list[str], *, ids_setting: str, ext_setting: str
) -> tuple[FileSpec, ...]:
    """Pair IDs with extensions (each "" or starting with a dot), rejecting bad or repeated
    IDs and two files that would get the same name."""
    if len(file_ids) != len(extensions):
        raise ConfigurationError(
            setting=ext_setting,
            problem=f"has {len(extensions)} items but {ids_setting} has {len(file_ids)}",
        )
    specs: dict[str, FileSpec] = {}
    names: dict[str, str] = {}
    for raw_id, extension in zip(file_ids, extensions, strict=True):
        file_id = validate_file_id(raw_id.strip(), setting=ids_setting)
        if file_id in specs:
            raise ConfigurationError(setting=ids_setting, problem=f"{file_id} is listed twice")
        spec = specs[file_id] = FileSpec(file_id, extension)
        other = names.setdefault(spec.file_name, file_id)
        if other != file_id:
            raise ConfigurationError(
                setting=ext_setting, problem=f"{other} and {file_id} would both be {spec.file_name}"
            )
    return tuple(specs.values())


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(setting=name, problem="is not set")
    return value


def work_package_from_env(environ: Mapping[str, str] | None = None) -> WorkPackage:
    """Read the work package from the ``GHGA_*`` environment variables (README)."""
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
            file_ids,
            [typed_extension(extension) for extension in extensions],
            ids_setting=ENV_FILE_IDS,
            ext_setting=ENV_EXTENSIONS,
        ),
        user_id=_required(env, ENV_USER_ID),
        user_public_key=parse_public_key(_required(env, ENV_USER_KEY), setting=ENV_USER_KEY),
        ghga_public_key=parse_public_key(_required(env, ENV_GHGA_KEY), setting=ENV_GHGA_KEY),
        download_api_url=api_url,
        work_order_token=env.get(ENV_WORK_ORDER_TOKEN) or None,
    )
