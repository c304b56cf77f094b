"""The engines' dump tools: how each engine family dumps one database and restores it.

The dump is made by the server's own tools inside its container, so their version
always matches the server's: ``pg_dump`` (a plain SQL script) on Postgres;
``mariadb-dump`` or ``mysqldump`` on MySQL and MariaDB (tables, rows, views,
routines, triggers and events). A MySQL dump is restored by the ``mariadb`` or
``mysql`` client in the container; a Postgres script is replayed by freshdb itself
over a connection to the database being restored (:func:`replay_sql_script`): no
program runs in the container, which saves an exec and ``pg_restore``'s start and
its statement-by-statement round trips (measured: 189 ms -> 97 ms, median of 7 pairs,
for a Django history of 164 migrations). What a dump of one database leaves out is
kept in the manifest and re-applied after the restore.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable
from typing import IO, Any, BinaryIO

from freshdb import naming
from freshdb.backends.base import ByteSource
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import FreshDBError
from freshdb.template_cache.manifest import CacheEntryError, CacheManifest

_CHARSET_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
#: Runs a program (command, environment) in the server's container, ``stdin`` fed to it.
ProgramRun = Callable[[tuple[list[str], dict[str, str]], ByteSource | None], None]


class DumpTool(abc.ABC):
    """How one engine family dumps one database and restores it, inside its container."""

    #: The dump's file name in an entry.
    dump_name: str

    @abc.abstractmethod
    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        """The program (and its environment) writing the dump of ``database`` to stdout."""

    def check_manifest(self, manifest: CacheManifest) -> None:
        """:class:`CacheEntryError` if this tool cannot restore the entry's dump."""
        if manifest.dump != self.dump_name:
            # E.g. an older freshdb's custom-format archive (template.pgdump).
            raise CacheEntryError(
                f"its dump {manifest.dump} is not a {self.dump_name} (another freshdb's format)"
            )

    def restore(
        self,
        run_program: ProgramRun,
        dialect: Dialect,
        address: ServerAddress,
        database: str,
        dump: BinaryIO,
        manifest: CacheManifest,
    ) -> None:
        """Restore ``dump`` into the empty ``database`` (raises if it fails midway).

        By default a program in the container reads the prologue and the dump on stdin.
        """
        program = self.restore_command(address, database)
        run_program(program, _Concatenated(self.restore_prologue(manifest), dump))

    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        """The program (and its environment) restoring a dump from stdin into ``database``."""
        raise NotImplementedError(f"{type(self).__name__} restores without a program")

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
    """``pg_dump`` (a plain SQL script) in the container, over its Unix socket; the
    script replayed by freshdb over its own connection (:func:`replay_sql_script`).

    The socket, as ``freshdb shell`` uses: the official image trusts it, while its
    TCP lines may expect another password format than the one freshdb stores.
    """

    dump_name = "template.sql"

    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        command = ["pg_dump", "--format=plain", "-U", address.user, "-d", database]
        return command, {"PGPASSWORD": address.password}

    def restore(
        self,
        run_program: ProgramRun,
        dialect: Dialect,
        address: ServerAddress,
        database: str,
        dump: BinaryIO,
        manifest: CacheManifest,
    ) -> None:
        from freshdb.dialects.postgres.statements import as_psycopg

        conn = as_psycopg(dialect.connect(address, database))
        try:
            replay_sql_script(conn, dump)
        finally:
            conn.close()

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


#: A line of a plain dump that starts a table's rows, read by COPY until ``\\.``.
_COPY_FROM_STDIN = re.compile(rb"^COPY .+ FROM stdin;\n?$")
#: psql's guard around a plain dump (pg_dump 17.6, 16.10, ... and newer): it stops psql
#: from running meta-commands hidden in the data; freshdb runs none, so it skips it.
_RESTRICT = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+\n?$")
#: pg_dump's last comment: a script without it was cut short.
_DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
_COPY_CHUNK = 1 << 20


def replay_sql_script(conn: Any, script: Iterable[bytes]) -> None:
    """Run a plain ``pg_dump`` script on ``conn`` (psycopg, autocommit), as psql would.

    The statements between two tables' rows go to the server in one simple query;
    each ``COPY ... FROM stdin`` block is streamed through psycopg's COPY. psql's
    ``\\restrict`` guard is skipped where pg_dump puts it (before the first statement,
    after the closing comment); any other line goes to the server as it is. Raises
    :class:`FreshDBError` if the script ends inside a table's rows or without
    pg_dump's closing comment (a truncated dump), and whatever the server raises for
    a statement that fails: the caller drops the half-restored database.

    A function body with a line that reads exactly like a dump's ``COPY ... FROM
    stdin;`` would be taken for one: the restore then fails and the migrations run.
    """
    statements: list[bytes] = []
    started = complete = False
    lines = iter(script)
    for line in lines:
        if _RESTRICT.match(line) and (not started or complete):
            continue
        if _COPY_FROM_STDIN.match(line):
            _execute(conn, statements)
            statements = []
            _copy_rows(conn, line, lines)
            continue
        if line.startswith(_DUMP_COMPLETE):
            complete = True
        elif not started and line.strip() and not line.startswith(b"--"):
            started = True
        statements.append(line)
    if not complete:
        raise FreshDBError(
            "the dump is incomplete: it lacks pg_dump's closing comment (cut short?)"
        )
    _execute(conn, statements)


def _execute(conn: Any, statements: list[bytes]) -> None:
    text = b"".join(statements)
    if text.strip():
        conn.execute(text)


def _copy_rows(conn: Any, statement: bytes, lines: Iterable[bytes]) -> None:
    chunk: list[bytes] = []
    size = 0
    with conn.cursor() as cursor, cursor.copy(statement.rstrip(b"\n").rstrip(b";")) as copy:
        for line in lines:
            if line.rstrip(b"\n") == b"\\.":
                break
            chunk.append(line)
            size += len(line)
            if size >= _COPY_CHUNK:
                copy.write(b"".join(chunk))
                chunk, size = [], 0
        else:
            raise FreshDBError(
                f"the dump ends inside the rows of {statement.decode(errors='replace')!r}"
                " (cut short?)"
            )
        if chunk:
            copy.write(b"".join(chunk))


class _Concatenated:
    """A readable stream of some bytes followed by a file (a restoring program's stdin)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._rest.read(size)


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


__all__ = [
    "DumpTool",
    "MySQLDumpTool",
    "PostgresDumpTool",
    "dump_tool_for",
    "replay_sql_script",
]
