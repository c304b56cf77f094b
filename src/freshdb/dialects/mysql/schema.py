"""Reading a MySQL database's objects as DDL that re-creates them elsewhere.

What a copy replays and what moves a kept copy: tables, MariaDB sequences, views
(in an order that creates each after those it reads), routines, triggers, events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from freshdb import naming
from freshdb.dialects.base import DBAPIConnection, rows, scalar
from freshdb.dialects.mysql.statements import (
    LEAVE_DATABASE,
    ProgramDefinition,
    execute,
    first_row,
    literal,
    quote,
    quote_database,
)
from freshdb.errors import FreshDBError


@dataclasses.dataclass(frozen=True)
class SchemaObjects:
    """A database's objects as DDL, read with the database as the current one."""

    character_set: str
    collation: str
    #: ``(table, CREATE TABLE …)`` of every base table but the completion marker.
    tables: tuple[tuple[str, str], ...] = ()
    #: MariaDB sequences: ``(name, CREATE SEQUENCE …, next value)``.
    sequences: tuple[tuple[str, str, int], ...] = ()
    #: ``CREATE VIEW …`` ordered so a view comes after the views it reads.
    views: tuple[str, ...] = ()
    #: Routines, triggers and events: ``(sql_mode they were made under, time zone of
    #: an event's schedule or None, DDL)``.
    programs: tuple[tuple[str, str | None, str], ...] = ()

    def replay(self, with_tables: bool, inserts: Sequence[str] = ()) -> list[str]:
        """Statements re-creating these objects in the current database.

        ``with_tables``: create the tables and sequences too, then run ``inserts``
        (which fill them) before any trigger exists to fire on them. Without, only
        views and programs are made (the tables are moved there separately).
        """
        # Like mysqldump: no FK checks (any table order), permissive sql_mode so DDL
        # made under another mode replays, NO_AUTO_VALUE_ON_ZERO so an id 0 stays 0,
        # UTC so TIMESTAMP values cross unchanged.
        statements = [
            "SET SESSION foreign_key_checks = 0, unique_checks = 0, "
            "sql_mode = 'NO_AUTO_VALUE_ON_ZERO', time_zone = '+00:00'"
        ]
        if with_tables:
            for name, ddl, next_value in self.sequences:
                statements.append(ddl)
                statements.append(f"SELECT SETVAL({quote(name)}, {next_value}, 0)")
            statements.extend(ddl for _, ddl in self.tables)
            statements.extend(inserts)
        statements.extend(self.views)
        current_mode: str | None = None
        current_zone: str | None = None
        for sql_mode, time_zone, ddl in self.programs:
            if sql_mode != current_mode:
                statements.append(f"SET SESSION sql_mode = {literal(sql_mode)}")
                current_mode = sql_mode
            if time_zone is not None and time_zone != current_zone:
                # An event's schedule is read in the zone it was made in, and kept.
                statements.append(f"SET SESSION time_zone = {literal(time_zone)}")
                current_zone = time_zone
            statements.append(ProgramDefinition(ddl))
        statements.append(
            "SET SESSION foreign_key_checks = DEFAULT, unique_checks = DEFAULT, "
            "sql_mode = DEFAULT, time_zone = DEFAULT"
        )
        return statements

    @property
    def empty(self) -> bool:
        """Whether there is nothing to re-create."""
        return not (self.tables or self.sequences or self.views or self.programs)


def order_views(views: Sequence[tuple[str, str]]) -> list[str]:
    """View DDL in an order where each view follows the views it reads.

    ``views`` is ``(name, CREATE VIEW …)``. The server writes every identifier
    backquoted, so a view reads another if the other's quoted name appears in its
    text (a column of the same name only adds a harmless extra edge). On a cycle
    (only possible through such extra edges) the remaining views keep their order.
    """
    pending = dict(views)
    needs = {
        name: {other for other in pending if other != name and quote(other) in ddl}
        for name, ddl in pending.items()
    }
    ordered: list[str] = []
    done: set[str] = set()
    while pending:
        ready = [name for name in pending if needs[name] <= done]
        for name in ready or list(pending):
            ordered.append(pending.pop(name))
            done.add(name)
    return ordered


def read_schema_objects(conn: DBAPIConnection, database: str) -> SchemaObjects:
    """Every object of ``database`` as DDL that re-creates it in another one.

    Read with ``database`` as the current database, so the server leaves names
    in views unqualified (and any qualifier left is stripped): a copied view then
    reads the copy's own tables, not the original's.
    """
    quoted = quote_database(database)
    charset_row = first_row(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
        "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (database,),
    )
    if not charset_row:
        raise FreshDBError(f"database {database} does not exist")
    marker_tables = {naming.COMPLETION_MARKER_TABLE, naming.COMPLETION_MARKER_PENDING_TABLE}
    kinds = rows(
        conn,
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
        (database,),
    )

    def unqualified(ddl: str) -> str:
        return ddl.replace(quoted + ".", "")

    execute(conn, f"USE {quoted}")
    try:
        tables: list[tuple[str, str]] = []
        sequences: list[tuple[str, str, int]] = []
        views: list[tuple[str, str]] = []
        for name, kind in ((str(n), str(k)) for n, k in kinds):
            if name in marker_tables:
                continue
            if kind == "VIEW":
                views.append((name, unqualified(_show(conn, "VIEW", name))))
            elif kind == "SEQUENCE":
                next_value = int(scalar(conn, f"SELECT next_not_cached_value FROM {quote(name)}"))
                sequences.append((name, unqualified(_show(conn, "SEQUENCE", name)), next_value))
            else:
                tables.append((name, unqualified(_show(conn, "TABLE", name))))
        programs: list[tuple[str, str | None, str]] = []
        for kind, names in _programs(conn, database):
            for name in names:
                row = first_row(conn, f"SHOW CREATE {kind} {quote(name)}")
                # Routines and triggers: (name, sql_mode, DDL, ...); events:
                # (name, sql_mode, time_zone, DDL, ...).
                if kind == "EVENT":
                    programs.append((str(row[1]), str(row[2]), unqualified(str(row[3]))))
                else:
                    programs.append((str(row[1]), None, unqualified(str(row[2]))))
    finally:
        execute(conn, LEAVE_DATABASE)
    return SchemaObjects(
        character_set=str(charset_row[0]),
        collation=str(charset_row[1]),
        tables=tuple(tables),
        sequences=tuple(sequences),
        views=tuple(order_views(views)),
        programs=tuple(programs),
    )


def _programs(conn: DBAPIConnection, database: str) -> Iterable[tuple[str, list[str]]]:
    routines = rows(
        conn,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
        (database,),
    )
    yield "PROCEDURE", [str(n) for t, n in routines if str(t) == "PROCEDURE"]
    yield "FUNCTION", [str(n) for t, n in routines if str(t) == "FUNCTION"]
    for kind, query in _PROGRAM_NAMES:
        yield kind, [str(row[0]) for row in rows(conn, query, (database,))]


_PROGRAM_NAMES = (
    # Triggers of one table and timing fire in creation order: keep it.
    (
        "TRIGGER",
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
        "ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
    ),
    (
        "EVENT",
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
        "ORDER BY EVENT_NAME",
    ),
)


def _show(conn: DBAPIConnection, kind: str, name: str) -> str:
    """The DDL ``SHOW CREATE {kind}`` gives for a table, view or sequence."""
    return str(first_row(conn, f"SHOW CREATE {kind} {quote(name)}")[1])
