"""Connection-string helpers: switch database, describe without secrets."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def describe(dsn: str) -> str:
    """`database@host[:port]` for display: never the user's password."""
    parts = urlsplit(dsn)
    host = parts.hostname or parse_qs(parts.query).get("host", ["local socket"])[0]
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{database_name(dsn)}@{host}"
