"""Every route's parameters, checked before its handler runs (an app-wide dependency).

- No NUL character, in any path or query parameter: PostgreSQL text cannot hold one, so
  a value with it fails its statement (asyncpg's CharacterNotInRepertoireError, a 500)
  and can match nothing anyway. A 400 that names the parameter.
"""

from __future__ import annotations

from fastapi import HTTPException, Request


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
