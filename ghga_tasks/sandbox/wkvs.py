"""The sandbox's Well-Known Value Service: where the other APIs are (``docs/protocol.md``).

    GET /.well-known/values, /.well-known/values/{name}, /.well-known/health

As in GHGA, ``crypt4gh_public_keys`` maps each *storage alias* (data hub) to that hub's
public key, which clients need only to upload. GHGA's central key, the one that writes
download envelopes, is not among them. ``storage_aliases`` and ``storage_labels`` name
the same hubs.

Faults for client tests, off by default: values left out (:attr:`WellKnownValuesApi.omit`)
or replaced (:attr:`WellKnownValuesApi.overrides`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from ghga_tasks.sandbox.app import Request, Response, Router, json_response
from ghga_tasks.sandbox.presign import OUTBOX_PATH
from ghga_tasks.sandbox.wps import WPS_BASE_PATH

WKVS_BASE_PATH = "/.well-known"
UCS_BASE_PATH = "/ucs"  # listed because the official client insists; never served
STORAGE_ALIASES = ("HD01", "TUE01")  # two data hubs, as GHGA has several


class WellKnownValuesApi:
    """``/.well-known/values``: API locations and the data hubs' Crypt4GH keys."""

    def __init__(self, crypt4gh_public_keys: Mapping[str, bytes], dcs_base_path: str) -> None:
        self.crypt4gh_public_keys = dict(crypt4gh_public_keys)  # storage alias -> hub key
        self.dcs_base_path = dcs_base_path
        self.omit: set[str] = set()  # fault: leave these values out of the answer
        self.overrides: dict[str, Any] = {}  # fault: answer these values instead

    def register(self, router: Router, base_path: str = WKVS_BASE_PATH) -> None:
        router.add("GET", f"{re.escape(base_path)}/health", self.health)
        router.add("GET", f"{re.escape(base_path)}/values", self.values)
        router.add("GET", f"{re.escape(base_path)}/values/(?P<name>[^/]+)", self.value)

    def health(self, request: Request) -> Response:
        return json_response(200, {"status": "OK"})

    def all_values(self, base_url: str) -> dict[str, Any]:
        aliases = list(self.crypt4gh_public_keys)
        values: dict[str, Any] = {
            "crypt4gh_public_keys": {
                alias: base64.b64encode(key).decode()
                for alias, key in self.crypt4gh_public_keys.items()
            },
            "wps_api_url": f"{base_url}{WPS_BASE_PATH}",
            "dcs_api_url": f"{base_url}{self.dcs_base_path}",
            "ucs_api_url": f"{base_url}{UCS_BASE_PATH}",
            # Every sandbox hub is this one object store.
            "storage_aliases": {alias: f"{base_url}{OUTBOX_PATH}" for alias in aliases},
            "storage_labels": {alias: f"Sandbox data hub {alias}" for alias in aliases},
        }
        values.update(self.overrides)
        return {name: value for name, value in values.items() if name not in self.omit}

    def values(self, request: Request) -> Response:
        return json_response(200, self.all_values(request.base_url))

    def value(self, request: Request, name: str) -> Response:
        values = self.all_values(request.base_url)
        if name not in values:
            return json_response(404, {"detail": f"The value {name} is not configured"})
        return json_response(200, {name: values[name]})
