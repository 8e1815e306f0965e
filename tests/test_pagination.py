"""Paged views never link to an empty page: an exactly full last page has no "next".

Each view is walked by its HTML "next" link; the htmx fragment and the JSON twin of
every page must agree on whether there is a next page.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

import pytest

from tests.fleet import machines_sql, mid
from tests.support import execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
LIMIT = 3


class Paged(NamedTuple):
    first: str  # URL of the first page
    row: str  # regex of one row
    next_link: str  # regex whose group 1 is the next page's URL
    more: str  # the JSON twin's "there is a next page" key


VIEWS = {
    "machines": Paged(
        f"/?limit={LIMIT}", r'<tr id="m-', r'<a rel="next" href="([^"]+)"', "next_after"
    ),
    "sessions": Paged(
        f"/sessions?limit={LIMIT}", r'<tr id="s-', r'<a rel="next" href="([^"]+)"', "next_after"
    ),
    "history": Paged(
        f"/machine/{mid(1)}/history?limit={LIMIT}",
        r'<span class="event">',
        r'<a href="([^"]+)"[^>]*>older »</a>',
        "has_more",
    ),
}


def rows_sql(first: int, last: int) -> list[str]:
    """Machines, sessions and machine 1's history events numbered first..last."""
    series = f"generate_series({first}, {last}) g"
    return [
        machines_sql(first, last),
        "INSERT INTO sessions SELECT"
        " ('5e55' || lpad(to_hex(g), 4, '0') || '-0000-4000-8000-000000000000')::uuid,"
        f" 'shepherd', 'pid', now(), 60, now() + interval '1 hour' FROM {series}",
        f"INSERT INTO work_history SELECT '{mid(1)}', 'ShepherdAccess', 'Finished',"
        f" now() - g * interval '1 minute', NULL FROM {series}",
    ]


def walk(client, view: Paged) -> list[int]:
    """Rows on each page, following the HTML's next link from the first page."""
    sizes: list[int] = []
    url: str | None = view.first
    while url is not None:
        assert len(sizes) < 5, "the pages never end"
        page = client.get(url)
        assert page.status_code == 200, page.text[:500]
        sizes.append(len(re.findall(view.row, page.text)))
        link = re.search(view.next_link, page.text)
        fragment = client.get(url, headers=HTMX).text
        assert bool(re.search(view.next_link, fragment)) == bool(link), url
        twin = client.get(url + "&format=json").json()
        assert bool(twin[view.more]) == bool(link), (url, twin[view.more])
        if link is None:
            assert twin[view.more] in (None, False)  # null / false, not a falsy stand-in
        url = html.unescape(link.group(1)) if link else None
    return sizes


@pytest.mark.parametrize(
    ("rows", "pages"),
    [
        (LIMIT, [LIMIT]),  # one exactly full page
        (2 * LIMIT, [LIMIT, LIMIT]),  # the second page is exactly full: no third
        (2 * LIMIT + 1, [LIMIT, LIMIT, 1]),  # one more row: a third page, linked
    ],
)
def test_next_link_only_when_a_next_page_has_rows(migrated_db_dsn, rows, pages):
    run_sync(execute(migrated_db_dsn, *rows_sql(1, rows)))
    with webug_client(migrated_db_dsn) as client:
        for name, view in VIEWS.items():
            assert walk(client, view) == pages, name
