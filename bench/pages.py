"""The pages the bench requests: one URL (and htmx headers) per case, over HTTP only."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

LONG_HISTORY = 500  # work history rows of the "long history" machine
HTMX = {"HX-Request": "true"}
CURRENT_PTAG = "__current__"  # replaced by the fragment's current HX-PTag before timing


@dataclass(frozen=True)
class Page:
    name: str
    path: str | None  # None: no page, only raw queries (work a view does once, then caches)
    headers: dict[str, str] = field(default_factory=dict)


# Names the targets refer to.
LIST = "list: first page"
LIST_JSON = "list: first page, JSON twin"
LIST_POLL = "list: poll fragment"
DETAIL = "detail"
DETAIL_LONG = f"detail ({LONG_HISTORY} history rows)"
LIVE = "live fragment (changed)"
LIVE_304 = "live fragment (unchanged, 304)"
HISTORY = "history fragment"
HISTORY_304 = "history fragment (unchanged, 304)"
SESSIONS = "sessions list"
SESSION = "session page"
SESSION_LIVE = "session live fragment"


def pages(ids: dict[str, str]) -> list[Page]:
    """`ids`: machine IDs "work" (holds work), "deep" (90 % into the fleet), "long" (a
    long history), "session" (a session holding work)."""
    work, long, session = ids["work"], ids["long"], ids["session"]
    return [
        Page(LIST, "/"),
        Page(LIST_JSON, "/", {"Accept": "application/json"}),
        Page("list: filtered", "/?provider=Equinix&status=Running"),
        Page("list: deep keyset page", f"/?after={ids['deep']}"),
        Page(LIST_POLL, "/", HTMX),
        Page("list: total + facets, once per view (raw only)", None),
        Page("list: filtered total + facets (raw only)", None),
        Page(DETAIL, f"/machine/{work}"),
        Page(DETAIL_LONG, f"/machine/{long}"),
        Page(LIVE, f"/machine/{work}/live", HTMX),
        Page(LIVE_304, f"/machine/{work}/live", {**HTMX, "HX-PTag": CURRENT_PTAG}),
        Page(HISTORY, f"/machine/{long}/history", HTMX),
        Page(HISTORY_304, f"/machine/{long}/history", {**HTMX, "HX-PTag": CURRENT_PTAG}),
        Page("overview", "/overview"),
        Page(SESSIONS, "/sessions"),
        Page(SESSION, f"/session/{session}"),
        Page(SESSION_LIVE, f"/session/{session}/live", HTMX),
        # A unique prefix: answered with a redirect (303) to the machine.
        Page("search: machine ID prefix", f"/search?q={work.replace('-', '')[:8]}"),
    ]


async def request_headers(client: httpx.AsyncClient, page: Page) -> dict[str, str]:
    """The page's headers, with the fragment's current poll tag where one is asked for
    (the one htmx would echo: its data did not change since)."""
    headers = dict(page.headers)
    if headers.get("HX-PTag") == CURRENT_PTAG:
        fresh = await client.get(page.path, headers={"HX-Request": "true"})
        headers["HX-PTag"] = fresh.headers["HX-PTag"]
    return headers


async def get(client: httpx.AsyncClient, page: Page, headers: dict[str, str]) -> httpx.Response:
    """One request of the page. A poll echoes the HX-PTag of the response before, as htmx
    does: when the fragment's data changed (a session expired), the next poll is a 304
    again."""
    response = await client.get(page.path, headers=headers)
    if "HX-PTag" in headers and "HX-PTag" in response.headers:
        headers["HX-PTag"] = response.headers["HX-PTag"]
    return response
