"""One typed settings object, passed explicitly to everything that needs a setting.

Field names are the Snakemake config keys (config/README.md), so ``Settings.from_mapping(config)``
works on a Snakemake config and on the JSON the plan step writes for the download jobs.
``workflow/schemas/config.schema.yaml`` declares the same keys; a test keeps them in step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

WORK_PACKAGE_SOURCES = ("env", "wps")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
# Bounds in JSON Schema's words, so the config schema can be checked against them.
AT_LEAST_ONE = {"minimum": 1}
POSITIVE = {"exclusiveMinimum": 0}  # and finite: NaN or infinity would never be reached


@dataclass(frozen=True)
class Settings:
    output_dir: Path = Path("downloads")
    work_package_source: str = field(default="env", metadata={"enum": WORK_PACKAGE_SOURCES})
    # wps only: "" means the env var (GHGA_WKVS_URL, GHGA_DOWNLOAD_TOKEN) or GHGA's own
    # well-known values. A file *name* for the token: the token itself is never a setting.
    wkvs_url: str = ""
    download_token_file: str = ""
    user_public_key: Path = Path("key.pub")
    user_private_key: Path = Path("key.sec")
    # GHGA's central Crypt4GH public key (key text or a key file), if you have it: every
    # envelope must then be written with it (exit 5 otherwise). Empty: the writer key is
    # recorded, not enforced (GHGA does not publish that key). Env mode: GHGA_PUBLIC_KEY.
    ghga_public_key: str = ""
    skip_downloaded: bool = False
    skip_unavailable: bool = False
    max_wait_time: float = field(default=3600.0, metadata=POSITIVE)
    connections: int = field(default=4, metadata=AT_LEAST_ONE)
    part_size: int = field(default=16 * 1024 * 1024, metadata=AT_LEAST_ONE)
    connect_timeout: float = field(default=10.0, metadata=POSITIVE)
    read_timeout: float = field(default=60.0, metadata=POSITIVE)
    # The Download API may hold a request while it stages a file or has the envelope made;
    # GHGA's own client waits 310 s for it (docs/protocol.md).
    download_api_timeout: float = field(default=310.0, metadata=POSITIVE)
    range_retries: int = field(default=5, metadata=AT_LEAST_ONE)
    # Decrypt each file while it downloads (user_private_key) and compare the plaintext
    # SHA-256 with the archive's checksum; a mismatch deletes the .part (exit 5).
    verify: bool = False
    # Keep an interrupted file's .part, with a sidecar recording which byte ranges are on
    # disk for good (fdatasync'ed), and continue it on the next run. False: a stale .part is
    # replaced, the whole file fetched again.
    resume_partial: bool = False
    # Where the decrypt_file rule writes <name> for <output_dir>/<name>.c4gh; only used when
    # a rule (yours, or a target on the command line) asks for decrypted files.
    decrypted_dir: Path = Path("decrypted")
    # False: a .c4gh is a temporary file, removed once its decrypted file is verified.
    keep_encrypted: bool = True
    # Plain-http URLs for a host other than loopback are refused unless this is true:
    # tokens and presigned URLs would cross the network readable by anyone on the way.
    allow_http: bool = False
    # Where plan, download and report jobs run under a cluster executor: False keeps them on
    # the submit host (compute nodes often have no internet), True submits them as jobs.
    downloads_on_cluster: bool = False

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            problem = _bound_problem(getattr(self, spec.name), spec.metadata)
            if problem:
                raise ConfigurationError(setting=spec.name, problem=problem)
        if self.decrypted_dir.resolve() == self.output_dir.resolve():
            raise ConfigurationError(
                setting="decrypted_dir",
                problem="must not be output_dir: decrypted files would mix with downloads "
                "(for example decrypted_dir: decrypted)",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "") -> Settings:
        """Build from a config mapping, each value converted to its field's type.

        With ``source`` (where the mapping came from, for the message) an unknown key is
        an error naming the nearest known one: a typo must not pass silently.
        """
        if source:
            check_known_keys(values, source=source)
        converted: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            if spec.name in values and values[spec.name] is not None:
                converted[spec.name] = _convert(spec.name, spec.type, values[spec.name])
        return cls(**converted)

    def to_json(self) -> str:
        values = {key: str(v) if isinstance(v, Path) else v for key, v in self.as_dict().items()}
        return json.dumps(values, indent=2, sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_known_keys(values: Mapping[str, Any], *, source: str) -> None:
    """Every key must be a setting; the error names the nearest one (``skip_downloded``:
    did you mean ``skip_downloaded``?)."""
    known = [spec.name for spec in dataclasses.fields(Settings)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigurationError(setting=source, problem=f"unknown key {key!r}{hint}")


def _bound_problem(value: Any, bounds: Mapping[str, Any]) -> str:
    if "enum" in bounds and value not in bounds["enum"]:
        return f"{value!r} is not one of {', '.join(bounds['enum'])}"
    if "minimum" in bounds and not value >= bounds["minimum"]:
        return f"must be at least {bounds['minimum']}"
    # `not >` also refuses NaN, which would make every deadline unreachable.
    if "exclusiveMinimum" in bounds and not bounds["exclusiveMinimum"] < value < math.inf:
        return f"must be a number greater than {bounds['exclusiveMinimum']}"
    return ""


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn the strings users type for booleans ("true", "no", ...) and numbers ("2") into
    booleans and numbers.

    Snakemake's ``--config key=value`` only makes ``True``/``False`` booleans, and values
    nested in a module's config (``--config 'ghga={"connections": 2}'``) stay strings, so a
    JSON schema would reject them and a plain truth test would accept ``false``. A string
    that is no number is left as it is, for the schema to name.
    """
    normalized: dict[str, Any] = {}
    for spec in dataclasses.fields(Settings):
        value = config.get(spec.name)
        if spec.type == "bool" and value is not None:
            normalized[spec.name] = parse_bool(value, setting=spec.name)
        elif spec.type in ("int", "float") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                normalized[spec.name] = int(value) if spec.type == "int" else float(value)
    return normalized


def parse_bool(value: Any, *, setting: str) -> bool:
    """``--config skip_unavailable=true`` arrives as the string 'true'; accept what users type."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(setting=setting, problem=f"{value!r} is not true or false")


def _convert(name: str, type_name: Any, value: Any) -> Any:
    converters: dict[str, Callable[[Any], Any]] = {
        "Path": lambda v: Path(str(v)),
        "str": str,
        "bool": lambda v: parse_bool(v, setting=name),
        "int": int,
        "float": float,
    }
    converter = converters.get(str(type_name))
    if converter is None:  # a new field with a type nobody taught us to read
        raise ConfigurationError(setting=name, problem=f"has an unsupported type {type_name}")
    try:
        return converter(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ConfigurationError(
            setting=name, problem=f"{value!r} is not a valid {type_name}"
        ) from None
