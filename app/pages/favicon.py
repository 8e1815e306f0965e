"""/favicon.ico: browsers and bookmark tools ask for it whatever the page links to."""

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from app.render import urls

router = APIRouter(include_in_schema=False)


@router.get(urls.FAVICON)
async def favicon() -> RedirectResponse:
    return RedirectResponse(urls.static("favicon.svg"), status_code=301)
