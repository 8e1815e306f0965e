"""Rendered HTML kept while what it renders is unchanged: the one cache of HTML (and of
a JSON twin's list items, kept alike).

A list page draws a hundred rows and a machine page a hardware report of hundreds of
values, poll after poll, for every watcher, while most of them stay the same. An entry
is keyed by its template and a digest of everything it is rendered with (`digest`), so a
changed value is a new key, never a stale entry; and HTML depends on its data alone
(times are absolute, app/render/formatting.py), so an entry stays true however old.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any

import jinja2
from cachetools import LRUCache
from markupsafe import Markup


def fingerprint(value: object) -> str:
    """A short digest of a value's repr: a key that changes when what it shows does
    (rows and cells flash on change; poll tags name their view)."""
    return hashlib.blake2b(repr(value).encode(), digest_size=6).hexdigest()


def own_digest(value: object) -> str:
    """`value`'s own `render_digest` (a machine of a list: the md5 of its document, which
    the BMDB computes), or "" when it has none."""
    own = getattr(value, "render_digest", "")
    return own if isinstance(own, str) else ""


def digest(value: object) -> str:
    """What identifies `value` for rendering: its own digest, else a digest of its repr."""
    return own_digest(value) or fingerprint(value)


class Fragments:
    """Templates rendered by `render`, rows by `row` and a JSON twin's items by
    `item_json`, kept in a least-recently-used cache bounded by total characters."""

    def __init__(self, env: jinja2.Environment, max_chars: int = 32 * 1024 * 1024) -> None:
        self._env = env
        self._entries: LRUCache[Hashable, Markup | bytes] = LRUCache(
            maxsize=max_chars, getsizeof=len
        )
        self._largest = max_chars // 16  # one huge value must not evict everything else

    def render(self, template: str, **context: Any) -> Markup:
        """`template` rendered with `context` alone (not the page's)."""
        key = (template, *((name, digest(value)) for name, value in sorted(context.items())))
        return self._get(key, lambda: Markup(self._env.get_template(template).render(context)))

    def row(self, template: str, keyed_args: tuple, row: object, *args: Any) -> Markup:
        """The macro `row` of `template` for `row` and `args`; `keyed_args`: their digest,
        taken once for a whole list (`digest_of`)."""
        macro = self._env.get_template(template).module.row  # type: ignore[attr-defined]
        return self._get((template, keyed_args, digest(row)), lambda: macro(row, *args))

    def item_json(self, context_key: str, item: object, dump: Callable[[Any], bytes]) -> bytes:
        """A JSON twin's `dump(item)`, kept like a row when the item has its own digest:
        `context_key` names what else its JSON depends on (the reflected tag types)."""
        own = own_digest(item)
        if not own:
            return dump(item)
        return self._get(("json", type(item).__qualname__, context_key, own), lambda: dump(item))

    @staticmethod
    def digest_of(args: tuple) -> tuple:
        return tuple(digest(a) for a in args)

    def _get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The entry of `key`, made by `make()` when missing (HTML, or a JSON item)."""
        kept = self._entries.get(key)
        if kept is None:
            kept = make()
            if len(kept) <= self._largest:
                self._entries[key] = kept
        return kept
