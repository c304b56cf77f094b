"""Making a copy of a MySQL template, and moving a database under a new name.

Neither engine has ``CREATE DATABASE … TEMPLATE`` nor ``RENAME DATABASE``. A copy
replays the template's DDL, captured once per session (:func:`copy_recipe`), then
copies the rows with ``INSERT … SELECT`` under ``FOREIGN_KEY_CHECKS=0``; ``CREATE
TABLE … LIKE`` is not used: it silently drops foreign keys. A database is renamed by
moving its tables with ``RENAME TABLE`` and re-creating everything else.
"""

from __future__ import annotations

import dataclasses
import re

from freshdb import naming
from freshdb.dialects.base import CopyRecipe, DBAPIConnection, rows
from freshdb.dialects.mysql.schema import SchemaObjects, read_schema_objects
from freshdb.dialects.mysql.statements import (
    LEAVE_DATABASE,
    literal,
    quote,
    quote_database,
)


@dataclasses.dataclass(frozen=True)
class MySQLCopyRecipe(CopyRecipe):
    """What making a copy of one template runs."""

    character_set: str
    collation: str
    #: Run with the new copy as the current database.
    statements: tuple[str, ...]


def copy_recipe(conn: DBAPIConnection, template: str) -> MySQLCopyRecipe:
    """Capture what copying ``template`` runs: its DDL, and a copy of each filled table."""
    objects = read_schema_objects(conn, template)
    statements: list[str] = []
    if not objects.empty:
        inserts = [
            f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} "
            f"FROM {quote_database(template)}.{quote(table)}"
            for table, columns in _tables_with_rows(conn, template, objects)
        ]
        statements = objects.replay(with_tables=True, inserts=inserts)
    return MySQLCopyRecipe(
        template=template,
        character_set=objects.character_set,
        collation=objects.collation,
        statements=tuple(statements),
    )


def _tables_with_rows(
    conn: DBAPIConnection, template: str, objects: SchemaObjects
) -> list[tuple[str, str]]:
    """``(table, column list)`` of each table holding rows (empty ones cost nothing)."""
    tables = [table for table, _ in objects.tables]
    if not tables:
        return []
    probe = " UNION ALL ".join(
        f"SELECT {literal(table)}, EXISTS(SELECT 1 FROM {quote_database(template)}.{quote(table)})"
        for table in tables
    )
    filled = {str(table) for table, has_rows in rows(conn, probe) if has_rows}
    if not filled:
        return []
    # Generated columns are computed, never inserted; system-versioning period
    # columns (MariaDB) are set by the server. Invisible ones are listed by name.
    columns: dict[str, list[str]] = {}
    for table, column, extra in rows(
        conn,
        "SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND COALESCE(GENERATION_EXPRESSION, '') = '' "
        "ORDER BY TABLE_NAME, ORDINAL_POSITION",
        (template,),
    ):
        if str(table) in filled and not re.search(r"ROW (START|END)", str(extra or ""), re.I):
            columns.setdefault(str(table), []).append(quote(str(column)))
    return [(table, ", ".join(columns[table])) for table in tables if table in columns]


def create_database(name: str, character_set: str, collation: str) -> str:
    """``CREATE DATABASE`` with the character set and collation of another."""
    return (
        f"CREATE DATABASE {quote_database(name)} CHARACTER SET {quote(character_set)} "
        f"COLLATE {quote(collation)}"
    )


def clone_script(recipe: MySQLCopyRecipe, name: str) -> list[str]:
    """The statements making database ``name`` a copy of the recipe's template."""
    statements = [create_database(name, recipe.character_set, recipe.collation)]
    if recipe.statements:
        statements += [f"USE {quote_database(name)}", *recipe.statements, LEAVE_DATABASE]
    return statements


def rename_script(conn: DBAPIConnection, old: str, new: str) -> list[str]:
    """The statements moving database ``old`` to ``new`` (nobody may be using it).

    Tables move with ``RENAME TABLE`` (instant); views, routines and events cannot
    move between databases, and triggers block the move: those are re-created.
    """
    objects = read_schema_objects(conn, old)
    statements = [create_database(new, objects.character_set, objects.collation)]
    for (trigger,) in rows(
        conn,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
        (old,),
    ):
        statements.append(f"DROP TRIGGER {quote_database(old)}.{quote(str(trigger))}")
    movable = [table for table, _ in objects.tables] + [seq for seq, _, _ in objects.sequences]
    movable += [
        str(row[0])
        for row in rows(
            conn,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME IN (%s, %s)",
            (old, naming.COMPLETION_MARKER_TABLE, naming.COMPLETION_MARKER_PENDING_TABLE),
        )
    ]
    if movable:
        statements.append(
            "RENAME TABLE "
            + ", ".join(
                f"{quote_database(old)}.{quote(table)} TO {quote_database(new)}.{quote(table)}"
                for table in movable
            )
        )
    replay = objects.replay(with_tables=False)
    statements += [f"USE {quote_database(new)}", *replay, LEAVE_DATABASE]
    statements.append(f"DROP DATABASE {quote_database(old)}")
    return statements
