"""Writing Postgres statements: checked identifiers, and the psycopg connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from freshdb.dialects.base import DBAPIConnection
from freshdb.naming import check_identifier

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


def identifier(name: str) -> sql.Identifier:
    """A database name freshdb made, as an identifier (checked first: never unchecked SQL)."""
    from psycopg import sql

    return sql.Identifier(check_identifier(name))


def as_psycopg(conn: DBAPIConnection) -> psycopg.Connection[Any]:
    """The psycopg connection behind a :class:`DBAPIConnection` this dialect made."""
    return cast("psycopg.Connection[Any]", conn)
