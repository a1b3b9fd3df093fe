"""The answers GHGA's FastAPI services give before their own code runs (``docs/protocol.md``).

- FastAPI's ``HTTPBearer`` (the version GHGA pins): no ``Authorization`` header, one whose
  scheme is not ``Bearer``, or an empty token is 401 ``{"detail": "Not authenticated"}``
  with ``WWW-Authenticate: Bearer``.
- GHGA's auth policy for a bearer that is no valid token (bad signature, expired, wrong
  claims): 401 ``{"detail": "Invalid authentication credentials"}``, no ``WWW-Authenticate``.
- A path parameter typed ``UUID4`` that does not validate: 422 with the validation error
  list FastAPI sends, in pydantic's words (:func:`uuid4_or_error`).
"""

from __future__ import annotations

import uuid

from ghga_tasks.sandbox.app import Response, json_response

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_GROUP_LENGTHS = (8, 4, 4, 4, 12)
_HYPHENATED_LENGTH = 36
_URN_PREFIX = "urn:uuid:"


def not_authenticated() -> Response:
    """``HTTPBearer``'s answer when there is no bearer token to look at."""
    return json_response(
        401, {"detail": "Not authenticated"}, headers=[("WWW-Authenticate", "Bearer")]
    )


def invalid_credentials() -> Response:
    """GHGA's auth policy's answer to a bearer token it cannot accept."""
    return json_response(401, {"detail": "Invalid authentication credentials"})


def forbidden(reason: str) -> Response:
    """A service's own refusal: 403 with the reason as ``detail``."""
    return json_response(403, {"detail": reason})


def uuid4_or_error(value: str, parameter: str) -> uuid.UUID | Response:
    """``value`` as a UUID if pydantic's ``UUID4`` accepts it, else FastAPI's 422.

    Accepted like pydantic does: hyphenated, 32 bare hex digits, in braces or after
    ``urn:uuid:``, any letter case; RFC 4122 variant, version 4.
    """
    problem = _uuid_syntax_problem(value)
    if problem is not None:
        return _validation_error(
            parameter,
            value,
            kind="uuid_parsing",
            message=f"Input should be a valid UUID, {problem}",
            context={"error": problem},
        )
    parsed = uuid.UUID(_without_wrapper(value)[0])
    if parsed.version != 4:  # None unless the RFC 4122 variant, as pydantic checks it
        return _validation_error(
            parameter,
            value,
            kind="uuid_version",
            message="UUID version 4 expected",
            context={"expected_version": 4},
        )
    return parsed


def _without_wrapper(value: str) -> tuple[str, bool]:
    """The UUID text inside braces or a ``urn:uuid:`` prefix, and whether there was none."""
    if len(value) >= 2 and value[0] == "{" and value[-1] == "}":
        return value[1:-1], False
    if value.startswith(_URN_PREFIX):
        return value[len(_URN_PREFIX) :], False
    return value, True


def _uuid_syntax_problem(value: str) -> str | None:
    """Why ``value`` is no UUID, in pydantic's words (checks in its order), or None."""
    text, bare = _without_wrapper(value)
    for index, character in enumerate(text):
        if character != "-" and character not in _HEX_DIGITS:
            return f"invalid character: found `{character}` at {index}"
    groups = text.split("-")
    if len(groups) == 1 and bare and len(value) != _HYPHENATED_LENGTH:
        return None if len(value) == 32 else f"invalid length: found {len(value)}"
    if len(groups) != len(_GROUP_LENGTHS):
        return f"invalid group count: expected {len(_GROUP_LENGTHS)}, found {len(groups)}"
    for number, (group, expected) in enumerate(zip(groups, _GROUP_LENGTHS, strict=True)):
        if len(group) != expected:
            found = len(group)
            return f"invalid group length in group {number}: expected {expected}, found {found}"
    return None


def _validation_error(
    parameter: str, value: str, *, kind: str, message: str, context: dict[str, object]
) -> Response:
    error = {
        "type": kind,
        "loc": ["path", parameter],
        "msg": message,
        "input": value,
        "ctx": context,
    }
    return json_response(422, {"detail": [error]})
