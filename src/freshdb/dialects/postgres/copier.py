"""Making a copy of a Postgres template: ``CREATE DATABASE … TEMPLATE``, and what a
clone does not carry (database-level settings and grants), captured once per session."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from freshdb.dialects.base import CopyRecipe, DBAPIConnection, rows, scalar
from freshdb.dialects.postgres.statements import as_psycopg, identifier

if TYPE_CHECKING:
    from psycopg import sql

FILE_COPY_MAJOR = 15  # CREATE DATABASE ... STRATEGY FILE_COPY
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# Settings whose value is a list of names: the server keeps them as one string with
# each element quoted as an identifier where needed (`search_path=app, "My Schema"`),
# so they must be given back element by element, or the list becomes a single name.
# The server does not expose this flag (GUC_LIST_QUOTE); pg_dump keeps the same list.
_LIST_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "shared_preload_libraries",
        "local_preload_libraries",
        "unix_socket_directories",
    }
)


@dataclasses.dataclass(frozen=True)
class PostgresCopyRecipe(CopyRecipe):
    """How to clone one template, and what to run on each clone."""

    #: Statements with a ``{name}`` placeholder for the copy's quoted name.
    statements_after_clone: tuple[str, ...]
    #: Clone with ``STRATEGY FILE_COPY`` (Postgres 15 and newer).
    file_copy: bool


def copy_recipe(conn: DBAPIConnection, template: str, major: int) -> PostgresCopyRecipe:
    """The template's database-level settings and grants, as statements for a copy."""
    from psycopg import sql

    pg = as_psycopg(conn)
    statements: list[str] = []
    # ALTER DATABASE ... SET and ALTER ROLE ... IN DATABASE ... SET: a clone has none.
    settings = rows(
        conn,
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE s.setrole::regrole::text END, "
        "unnest(s.setconfig) FROM pg_db_role_setting s "
        "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s "
        "ORDER BY s.setrole",
        (template,),
    )
    for role, entry in settings:
        key, _, value = str(entry).partition("=")
        if not _SETTING_NAME.match(key):
            continue
        scope: sql.Composable = sql.SQL("DATABASE {name}")
        if role is not None:
            # regrole::text is already quoted as an identifier where needed.
            scope = sql.SQL("ROLE {} IN DATABASE {{name}}").format(sql.SQL(str(role)))
        statements.append(
            sql.SQL("ALTER {} SET {} = {}")
            .format(scope, sql.Identifier(key), setting_value(key, value))
            .as_string(pg)
        )
    acl = scalar(conn, "SELECT datacl IS NOT NULL FROM pg_database WHERE datname = %s", (template,))
    if acl:
        statements.append("REVOKE ALL ON DATABASE {name} FROM PUBLIC")
        grants = rows(
            conn,
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, "
            "a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
            "WHERE d.datname = %s AND a.grantee <> d.datdba",
            (template,),
        )
        for grantee, privilege in grants:
            target = (
                "PUBLIC"
                if grantee == "PUBLIC"
                else sql.Identifier(str(grantee).strip('"')).as_string(pg)
            )
            statements.append(f"GRANT {privilege} ON DATABASE {{name}} TO {target}")
    return PostgresCopyRecipe(
        template=template,
        statements_after_clone=tuple(statements),
        file_copy=major >= FILE_COPY_MAJOR,
    )


def clone(conn: DBAPIConnection, recipe: PostgresCopyRecipe, name: str) -> None:
    """Make database ``name`` a copy of the recipe's template."""
    from psycopg import sql

    pg = as_psycopg(conn)
    ident = identifier(name)
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, identifier(recipe.template))
    if recipe.file_copy:
        # Faster than WAL_LOG for small templates on tmpfs with fsync off.
        statement = sql.SQL("{} STRATEGY FILE_COPY").format(statement)
    pg.execute(statement)
    quoted = ident.as_string(pg)
    for template_statement in recipe.statements_after_clone:
        pg.execute(template_statement.replace("{name}", quoted).encode())


def setting_value(name: str, stored: str) -> sql.Composable:
    """The value of a stored database setting, as ``SET name = <this>`` must give it.

    A list setting (``search_path``) comes back as one literal per element, so
    ``app, public`` stays two schemas; any other setting is one literal, as stored.
    """
    from psycopg import sql

    if name.lower() not in _LIST_SETTINGS:
        return sql.Literal(stored)
    elements = split_name_list(stored) or [""]
    return sql.SQL(", ").join(sql.Literal(element) for element in elements)


def split_name_list(stored: str) -> list[str]:
    """Split a stored list of names (``app, "My ""odd"" schema", public``), unquoting."""
    elements: list[str] = []
    i, length = 0, len(stored)
    while i < length:
        while i < length and stored[i] in " \t":
            i += 1
        if i < length and stored[i] == '"':
            element, i = "", i + 1
            while i < length:
                if stored[i] == '"':
                    if stored.startswith('""', i):
                        element += '"'
                        i += 2
                        continue
                    i += 1
                    break
                element += stored[i]
                i += 1
            comma = stored.find(",", i)
        else:
            comma = stored.find(",", i)
            element = stored[i : length if comma == -1 else comma].strip()
        elements.append(element)
        if comma == -1:
            break
        i = comma + 1
    return elements
