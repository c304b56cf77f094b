"""Writing and running MySQL statements: quoting, and scripts in few round trips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freshdb import naming
from freshdb.dialects.base import DBAPIConnection, rows, scalar

# Leaving a database for a neutral one: a connection whose current database is a
# copy would be killed by that copy's DROP (there is no "USE nothing").
LEAVE_DATABASE = "USE information_schema"


def quote(identifier: str) -> str:
    """A backquoted identifier (any name the server reports back to us)."""
    return "`" + identifier.replace("`", "``") + "`"


def quote_database(name: str) -> str:
    """A backquoted database name freshdb made (checked first: never unchecked SQL)."""
    return quote(naming.check_identifier(name))


def literal(value: str) -> str:
    """A string literal, escaped for any sql_mode (backslashes and quotes doubled)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class ProgramDefinition(str):
    """The DDL of a routine, trigger or event: it must be the last statement of its
    round trip.

    MySQL takes a body that is a single statement (``DO DELETE …``, ``FOR EACH ROW
    SET …``) to run up to the end of the statement, and in a multi-statement script
    that includes the ``;`` after it, which it then keeps in the body.
    """

    __slots__ = ()


def execute(conn: DBAPIConnection, sql: str, params: Sequence[Any] | None = None) -> None:
    """Run one statement that returns nothing."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()


def first_row(conn: DBAPIConnection, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
    """The first row a statement returns (empty if none)."""
    found = rows(conn, sql, params)
    return list(found[0]) if found else []


def rows_of(conn: DBAPIConnection, sql: str, names: Sequence[str]) -> list[Any]:
    """The rows of a statement about some databases: ``{names}`` in ``sql`` stands for
    their placeholders (``IN ({names})``). No names, no query."""
    if not names:
        return []
    return rows(conn, sql.format(names=", ".join(["%s"] * len(names))), list(names))


def has_table(conn: DBAPIConnection, database: str, table: str) -> bool:
    """Whether ``database`` has a table (or view) named ``table``."""
    return bool(
        scalar(
            conn,
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (database, table),
        )
    )


def run_script(conn: DBAPIConnection, statements: Sequence[str]) -> None:
    """Run statements in as few round trips as they allow (the connection allows
    multi-statements): one, plus one per :class:`ProgramDefinition`, which must end
    its round trip.

    A newline before each ``;`` ends any ``--`` comment a routine body ends with.
    The server stops at the first failing statement; its error is raised here.
    """
    batch: list[str] = []
    for index, statement in enumerate(statements):
        batch.append(statement)
        if isinstance(statement, ProgramDefinition) or index == len(statements) - 1:
            _run_batch(conn, batch)
            batch = []


def _run_batch(conn: DBAPIConnection, statements: Sequence[str]) -> None:
    cursor = conn.cursor()
    try:
        cursor.execute("\n;\n".join(statements))
        while cursor.nextset():
            pass
    finally:
        cursor.close()
