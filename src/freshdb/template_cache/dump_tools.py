"""The engines' dump tools: how each engine family dumps one database and restores it.

The dump is made and restored by the server's own tools inside its container, so
their version always matches the server's: ``pg_dump -Fc`` / ``pg_restore`` on
Postgres; ``mariadb-dump`` or ``mysqldump`` / the ``mariadb`` or ``mysql`` client on
MySQL and MariaDB (tables, rows, views, routines, triggers and events). What a dump
of one database leaves out is kept in the manifest and re-applied after the restore.
"""

from __future__ import annotations

import abc
import re
from typing import Any

from freshdb import naming
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import FreshDBError
from freshdb.template_cache.manifest import CacheEntryError, CacheManifest

_CHARSET_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class DumpTool(abc.ABC):
    """How one engine family dumps one database and restores it, inside its container."""

    #: The dump's file name in an entry.
    dump_name: str

    @abc.abstractmethod
    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        """The program (and its environment) writing the dump of ``database`` to stdout."""

    @abc.abstractmethod
    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        """The program (and its environment) restoring a dump from stdin into ``database``."""

    def describe_database(
        self, dialect: Dialect, conn: DBAPIConnection, database: str
    ) -> dict[str, Any]:
        """Manifest fields for what a dump of ``database`` leaves out."""
        return {}

    def restore_prologue(self, manifest: CacheManifest) -> bytes:
        """What the restoring program reads before the dump."""
        return b""

    @abc.abstractmethod
    def after_restore(
        self, dialect: Dialect, conn: DBAPIConnection, database: str, manifest: CacheManifest
    ) -> None:
        """Re-apply what the dump left out (run on the admin connection)."""


class PostgresDumpTool(DumpTool):
    """``pg_dump -Fc`` and ``pg_restore``, over the container's Unix socket.

    The socket, as ``freshdb shell`` uses: the official image trusts it, while its
    TCP lines may expect another password format than the one freshdb stores.
    """

    dump_name = "template.pgdump"

    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        command = ["pg_dump", "--format=custom", "--no-sync", "-U", address.user, "-d", database]
        return command, {"PGPASSWORD": address.password}

    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        # Stop at the first error: a partial restore is dropped, never sealed.
        command = ["pg_restore", "--exit-on-error", "-U", address.user, "-d", database]
        return command, {"PGPASSWORD": address.password}

    def describe_database(
        self, dialect: Dialect, conn: DBAPIConnection, database: str
    ) -> dict[str, Any]:
        # The same statements a copy gets after its clone: settings and grants.
        from freshdb.dialects.postgres.copier import PostgresCopyRecipe

        recipe = dialect.copy_recipe(conn, database)
        assert isinstance(recipe, PostgresCopyRecipe)
        return {"database_statements": tuple(recipe.statements_after_clone)}

    def after_restore(
        self, dialect: Dialect, conn: DBAPIConnection, database: str, manifest: CacheManifest
    ) -> None:
        if not manifest.database_statements:
            return
        # Exactly as a clone applies them (the dialect's own clone step does this).
        quoted = '"' + naming.check_identifier(database) + '"'
        cursor = conn.cursor()
        try:
            for statement in manifest.database_statements:
                cursor.execute(statement.replace("{name}", quoted).encode())
        finally:
            cursor.close()


# MariaDB 11 images ship only the mariadb-* names, MySQL images only the mysql ones.
_FIRST_OF = 'for p in {names}; do if command -v "$p" >/dev/null 2>&1; then exec "$p" "$@"; fi; done; echo "none of {names} in the image" >&2; exit 127'  # noqa: E501


def _first_program(
    names: str, label: str, address: ServerAddress, *arguments: str
) -> tuple[list[str], dict[str, str]]:
    """The first of ``names`` the image has, as freshdb's user over TCP, with ``arguments``.

    ``label`` is the script's ``$0``: what the shell names in its own messages.
    """
    script = _FIRST_OF.format(names=names)
    command = ["sh", "-c", script, label, "-h", "127.0.0.1", "-u", address.user, *arguments]
    return command, {"MYSQL_PWD": address.password}


class MySQLDumpTool(DumpTool):
    """``mariadb-dump``/``mysqldump`` and the ``mariadb``/``mysql`` client, over TCP."""

    dump_name = "template.sql"

    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        return _first_program(
            "mariadb-dump mysqldump",
            "dump",
            address,
            "--single-transaction",
            "--skip-lock-tables",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--no-create-db",
            "--skip-comments",
            "--default-character-set=utf8mb4",
            # Never the completion marker: a restored template is complete only once
            # freshdb seals it, as a built one.
            f"--ignore-table={database}.{naming.COMPLETION_MARKER_TABLE}",
            f"--ignore-table={database}.{naming.COMPLETION_MARKER_PENDING_TABLE}",
            database,
        )

    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        return _first_program(
            "mariadb mysql", "client", address, "--default-character-set=utf8mb4", database
        )

    def describe_database(
        self, dialect: Dialect, conn: DBAPIConnection, database: str
    ) -> dict[str, Any]:
        row = dialect.rows(
            conn,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (database,),
        )
        if not row:
            raise FreshDBError(f"database {database} does not exist")
        return {"character_set": str(row[0][0]), "collation": str(row[0][1])}

    def after_restore(
        self, dialect: Dialect, conn: DBAPIConnection, database: str, manifest: CacheManifest
    ) -> None:
        """Nothing: the prologue set the character set, the dump made the rest."""

    def restore_prologue(self, manifest: CacheManifest) -> bytes:
        if not manifest.character_set or not manifest.collation:
            return b""
        for name in (manifest.character_set, manifest.collation):
            if not _CHARSET_NAME.match(name):
                raise CacheEntryError(f"its manifest names the character set {name!r}")
        # The restoring client's current database is the template being restored.
        return (
            f"ALTER DATABASE CHARACTER SET {manifest.character_set} COLLATE {manifest.collation};\n"
        ).encode()


def dump_tool_for(family: str) -> DumpTool:
    """The dump tool of an engine family."""
    return PostgresDumpTool() if family == "postgres" else MySQLDumpTool()


__all__ = ["DumpTool", "MySQLDumpTool", "PostgresDumpTool", "dump_tool_for"]
