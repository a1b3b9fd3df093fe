"""Turning command-line options and an optional config file into one ``Settings``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ghga_tasks.core.errors import ConfigurationError
from ghga_tasks.core.settings import Settings, check_known_keys, normalize_config

DEFAULT_CONFIG_FILE = Path("config/config.yaml")


def load_config_file(path: Path | None) -> dict[str, Any]:
    """The given YAML config file, or ``config/config.yaml`` here if there is one."""
    if path is None:
        if not DEFAULT_CONFIG_FILE.is_file():
            return {}
        path = DEFAULT_CONFIG_FILE
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(setting=str(path), problem=f"unreadable ({error})") from None
    if not isinstance(values, dict):
        raise ConfigurationError(setting=str(path), problem="is not a mapping of keys to values")
    check_known_keys(values, source=str(path))
    return values


def parse_config_values(items: tuple[str, ...]) -> dict[str, str]:
    """``("connections=2", ...)`` -> ``{"connections": "2"}``; each key must be a setting."""
    values: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigurationError(setting="--config", problem=f"{item!r} is not KEY=VALUE")
        values[key.strip()] = value
    check_known_keys(values, source="--config")
    return values


def build_settings(
    config_file: Path | None, config_values: tuple[str, ...] = (), **overrides: Any
) -> Settings:
    """Config file values, then ``--config KEY=VALUE`` items, then the options the user
    gave (``None`` means not given)."""
    values = load_config_file(config_file)
    values.update(parse_config_values(config_values))
    values.update({key: value for key, value in overrides.items() if value is not None})
    values.update(normalize_config(values))
    return Settings.from_mapping(values)
