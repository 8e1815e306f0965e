"""Machine and session IDs as operators paste them: whole, as prefixes, in lists."""

from __future__ import annotations

import re
from uuid import UUID

from fastapi import HTTPException

EXAMPLE_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
MIN_HEX_DIGITS = 4  # shortest machine / session ID prefix
MAX_TOKEN = 100  # characters of a listed token kept (an ID has 36)
_HEX_ID = re.compile(r"^[0-9a-fA-F-]+$")
_PASTE_NOISE = " \t\r\n'\"`"  # what chat and alerts wrap IDs in
_SEPARATORS = re.compile(r"[\s,;]+")


def parse_id(text: str, what: str, column: str) -> UUID:
    """A machine or session ID from the path; a 400 that shows the format otherwise."""
    try:
        return UUID(text)
    except ValueError:
        raise HTTPException(
            400,
            f"{text[:100]!r} is not a {what} ID: a {what} ID is a UUID such as "
            f"{EXAMPLE_ID} (the {column} column).",
        ) from None


def normalize(q: str) -> str:
    return q.strip(_PASTE_NOISE)


def hex_digits(text: str) -> int:
    """How many hex digits `text` has if it can be a UUID prefix, else 0."""
    if not _HEX_ID.match(text):
        return 0
    digits = len(text.replace("-", ""))
    return digits if digits <= 32 and len(text) <= 36 else 0


def parse_tokens(values: list[str]) -> list[str]:
    """The distinct tokens of ID lists, in order: split on commas, semicolons and white
    space, stripped of the quotes chat wraps IDs in, lower-cased, full IDs dashed."""
    tokens: dict[str, None] = {}
    for value in values:
        for part in _SEPARATORS.split(value):
            token = normalize(part).lower()[:MAX_TOKEN]
            if hex_digits(token) == 32:
                token = str(UUID(token))  # a full ID in its usual spelling
            if token:
                tokens[token] = None
    return list(tokens)
