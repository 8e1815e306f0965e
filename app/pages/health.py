"""/healthz: 200 when the BMDB answers, 503 otherwise (for load balancers and probes)."""

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app.deps import BMDB
from app.render import urls

router = APIRouter()


@router.get(urls.HEALTH, response_class=PlainTextResponse)
async def healthz(db: BMDB) -> PlainTextResponse:
    if await db.ping():
        return PlainTextResponse("ok\n")
    return PlainTextResponse("BMDB unreachable\n", status_code=503)
