"""OpenAPI descriptions of the routes that answer HTML or, on request, their JSON twin.

Every HTML page answers the same data as JSON (`?format=json` or `Accept:
application/json`): its page model (app/model/entities.py and each page's module)
serialized. `/openapi.json` documents each with `twin`; /api lists them.
"""

from __future__ import annotations

from pydantic import BaseModel

from app.model.entities import ErrorPage


def twin(model: type[BaseModel], what: str) -> dict:
    """`responses=` for a route that serves HTML or, on request, `model` as JSON."""
    return {
        200: {
            "model": model,
            "description": f"{what}: HTML, or JSON with `?format=json` / "
            "`Accept: application/json`",
            "content": {"text/html": {}},
        },
        400: {"model": ErrorPage, "description": "invalid parameter"},
        503: {"model": ErrorPage, "description": "BMDB unreachable"},
    }
