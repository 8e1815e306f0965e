"""What a pasted text (an alert, log lines, a chat message, JSON) can name: machine and
session IDs, IP addresses, and words that may be provider or reservation IDs.

Pure text work, linear in the text (no pattern here can backtrack): the search looks
every candidate up in one statement (app/bmdb/search.py), all in lower case, so any
letter case matches.

- IDs: UUIDs, dashed or as 32 hex digits, not inside a longer run of hex digits (a git
  hash or a 40-digit trace ID is not an ID).
- IP addresses: IPv4 (a port, CIDR suffix or sentence's full stop after it allowed) and
  IPv6 (in brackets, with a zone, compressed or not), checked by `ipaddress`.
- Words: runs of text between white space, quotes, brackets and commas, and their parts
  split at '=' and '/' (`provider_id=lumen-01`, a console URL), without the ':' or '.'
  that ends a phrase. Provider IDs are free-form; these are only looked up.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from uuid import UUID

MAX_WORD = 128  # provider_id, provider_reservation_id and provider_ip_address: STRING(128)

_UUID = re.compile(
    r"(?<![0-9a-f])[0-9a-f]{8}(-?)[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{12}(?![0-9a-f])",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\s\"'`,;()\[\]{}<>|]+")
_PARTS = re.compile(r"[=/]")
_PHRASE_END = ".:!?"
_ALNUM = re.compile(r"[0-9a-z]")
# Worth parsing as an address: hex digits, colons and dots, a zone, a CIDR suffix.
_IP_CHARS = re.compile(r"[0-9a-f:.]*[:.][0-9a-f:.]*(%[\w.-]*)?(/[0-9]+)?$")


@dataclass
class Candidates:
    """The candidates of one text, lower-cased, each with where it first appears."""

    ids: dict[UUID, int] = field(default_factory=dict)
    ips: dict[str, int] = field(default_factory=dict)  # as written and canonical
    words: dict[str, int] = field(default_factory=dict)  # IDs and addresses included

    def position(self, value: str) -> int:
        """Where `value` (a matched ID, IP or word, any case) first appears; past the
        text's end when it does not."""
        key = value.lower()
        return self.words.get(key, self.ips.get(key, 1 << 30))

    def __bool__(self) -> bool:
        return bool(self.ids or self.ips or self.words)


def _ip(text: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """(the address as written, parsed) when `text` is one: bare, with a zone (%eth0), a
    CIDR suffix or, for IPv4, a port."""
    text = text.split("%", 1)[0].split("/", 1)[0]
    for candidate in (text, text.rsplit(":", 1)[0] if text.count(":") == 1 else None):
        if candidate and ("." in candidate or ":" in candidate):
            try:
                return candidate, ipaddress.ip_address(candidate)
            except ValueError:
                continue
    return None


def extract(text: str) -> Candidates:
    pasted = Candidates()
    for match in _UUID.finditer(text):
        uuid = UUID(match.group())
        pasted.ids.setdefault(uuid, match.start())
        pasted.words.setdefault(str(uuid), match.start())  # an Equinix provider ID is one
    for match in _WORD.finditer(text):
        word, at = match.group(), match.start()
        for part in {word, *_PARTS.split(word)}:
            # "eq-1." ends a sentence, "host:" a label; "::1" is an address.
            for variant in {part, part.rstrip(_PHRASE_END), part.strip(_PHRASE_END)}:
                variant = variant.lower()
                if variant in pasted.words or len(variant) > MAX_WORD:
                    continue  # log lines repeat their words: each is looked at once
                if not _ALNUM.search(variant):
                    continue
                pasted.words[variant] = at
                if _IP_CHARS.match(variant) and (ip := _ip(variant)) is not None:
                    written, address = ip
                    # As written, compressed and (IPv6) in full: the BMDB keeps a string.
                    for form in {written, str(address), address.exploded}:
                        pasted.ips.setdefault(form, at)
    return pasted
