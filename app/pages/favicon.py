"""/favicon.ico: browsers and bookmark tools ask for it whatever the page links to."""

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.render import urls
from app.render.environment import APP_DIR

router = APIRouter()


@router.get(urls.FAVICON, include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(APP_DIR / "static" / "favicon.svg", media_type="image/svg+xml")
