"""/api: the JSON twins, documented from the OpenAPI document on a page of webug's own.

It replaces FastAPI's /docs and /redoc, which ran a CDN's JavaScript on webug's origin
under a looser policy. This is plain HTML (the site's templates, autoescaped, the strict
CSP of every page): for each GET route, its path, summary, query parameters and the
model of its JSON answer, which /openapi.json describes in full. No BMDB query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request

from app.render import urls
from app.render.templating import respond

router = APIRouter()

REF_PREFIX = "#/components/schemas/"


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None
    description: str


@dataclass(frozen=True)
class Route:
    path: str
    summary: str
    description: str
    parameters: list[Parameter]
    model: str | None  # of the 200 JSON answer


def type_name(schema: dict[str, Any]) -> str:
    """A short human type of a JSON schema: `string (≤ 200)`, `integer 1–500`, `list of string`."""
    if "$ref" in schema:
        return schema["$ref"].removeprefix(REF_PREFIX)
    if "anyOf" in schema:
        kinds = [type_name(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(kinds) or "null"
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return "list of " + type_name(schema.get("items", {}))
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    if "maxLength" in schema:
        kind = f"{kind} (≤ {schema['maxLength']} chars)"
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        kind = f"{kind} {'' if low is None else low}–{'' if high is None else high}"
    return kind


def json_model(operation: dict[str, Any]) -> str | None:
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref")
    return ref.removeprefix(REF_PREFIX) if ref else None


def get_routes(openapi: dict[str, Any]) -> list[Route]:
    """Every GET operation of the document, in its order."""
    routes = []
    for path, operations in openapi.get("paths", {}).items():
        operation = operations.get("get")
        if operation is None:
            continue
        parameters = [
            Parameter(
                name=p["name"],
                type=type_name(p.get("schema", {})),
                default=json.dumps(p["schema"]["default"])
                if "default" in p.get("schema", {})
                else None,
                description=p.get("description") or p.get("schema", {}).get("description", ""),
            )
            for p in operation.get("parameters", ())
            if p.get("in") == "query"
        ]
        routes.append(
            Route(
                path=path,
                summary=operation.get("summary", ""),
                description=operation.get("description", ""),
                parameters=parameters,
                model=json_model(operation),
            )
        )
    return routes


@router.get(urls.API, include_in_schema=False)
async def api_page(request: Request):
    openapi = request.app.openapi()  # built once, then FastAPI's cached copy
    return respond(request, "templates/api.html", routes=get_routes(openapi))
