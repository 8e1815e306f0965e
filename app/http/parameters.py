"""Every route's parameters, checked before its handler runs (an app-wide dependency).

- No NUL character, in any path or query parameter: PostgreSQL text cannot hold one, so
  a value with it fails its statement (asyncpg's CharacterNotInRepertoireError, a 500)
  and can match nothing anyway. A 400 that names the parameter.
- A query parameter that takes one value (the route's OpenAPI document says which are
  arrays) given several different values is a 400 that says which ones repeat: taking
  the last and dropping the others would show something else than the URL asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request

# Read by every page without being declared: ?format=json|csv.
UNDECLARED_SINGLE = frozenset({"format"})


@dataclass(frozen=True)
class _QueryParameters:
    """A route's query parameters, from the app's OpenAPI document."""

    single: frozenset[str]
    repeatable: tuple[str, ...]


def _is_array(schema: dict) -> bool:
    return schema.get("type") == "array" or any(_is_array(s) for s in schema.get("anyOf", ()))


def _query_parameters(request: Request) -> _QueryParameters:
    """The route's, read from the app's OpenAPI document once per route and method."""
    path = getattr(request.scope["route"], "path_format", "")
    by_route: dict[tuple[str, str], _QueryParameters] = request.app.state.query_parameters
    if (known := by_route.get((path, request.method))) is None:
        operation = request.app.openapi()["paths"].get(path, {}).get(request.method.lower(), {})
        query = [p for p in operation.get("parameters", ()) if p["in"] == "query"]
        known = by_route[(path, request.method)] = _QueryParameters(
            frozenset(p["name"] for p in query if not _is_array(p["schema"])) | UNDECLARED_SINGLE,
            tuple(p["name"] for p in query if _is_array(p["schema"])),
        )
    return known


def _refuse_nul(where: str, name: str) -> HTTPException:
    return HTTPException(
        400,
        f"The {where} {name[:50]!r} contains a NUL character (\\0): no value in the BMDB"
        " can, so remove it.",
    )


async def checked_parameters(request: Request) -> None:
    """A 400 for a parameter no page can answer (async: FastAPI runs a sync one in a thread)."""
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            raise _refuse_nul("path parameter", name)
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise _refuse_nul("query parameter", name)
    parameters = _query_parameters(request)
    for name in parameters.single:
        values = request.query_params.getlist(name)
        if len(set(values)) > 1:
            given = ", ".join(repr(v[:50]) for v in values[:5])
            repeatable = ", ".join(parameters.repeatable) or "none"
            raise HTTPException(
                400,
                f"{name} is given {len(values)} times ({given}); it takes one value."
                f" Repeatable here: {repeatable}.",
            )
