"""Plain ``.sql`` files: a file, or a directory of them applied in name order.

Files run the way ``psql`` and the ``mysql`` client run them: statement by statement,
each committed on its own (so ``CREATE INDEX CONCURRENTLY`` works, and an enum value
added by one statement can be used by the next), split where those clients split
(:mod:`freshdb.migrators.sql_splitter`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freshdb.errors import ConfigurationError, MigrationError
from freshdb.migrators.base import digest, migration_progress, shortened_statement

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from freshdb.migrators.sql_splitter import SqlFamily, Statement, StatementSplitter

__all__ = ["SqlMigrator", "run_statements", "split_statements"]


def split_statements(text: str, family: SqlFamily = "postgres") -> Iterator[Statement]:
    """Split SQL text into statements where ``psql`` (or the ``mysql`` client) would:
    :func:`freshdb.migrators.sql_splitter.split_statements`."""
    # The splitter compiles its patterns when imported (~20 ms): only once SQL is split.
    from freshdb.migrators.sql_splitter import split_statements as split

    return split(text, family)


def sql_family(connection: Connection) -> SqlFamily:
    """Which client's splitting rules fit the server behind ``connection``."""
    return "mysql" if connection.dialect.name in ("mysql", "mariadb") else "postgres"


class SqlMigrator:
    """Runs ``.sql`` files statement by statement; the fingerprint is their contents."""

    def __init__(self, *paths: str | Path) -> None:
        if not paths:
            raise ConfigurationError("SqlMigrator needs at least one .sql file or directory")
        self.paths = [Path(p) for p in paths]
        self.description = "SQL " + ", ".join(str(p) for p in self.paths)

    def files(self) -> list[Path]:
        """The files to run, in order: each path's files sorted by name."""
        found: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix == ".sql" and p.is_file())
                if not files:
                    raise ConfigurationError(f"no .sql files in schema directory {path}")
                found.extend(files)
            elif path.is_file():
                found.append(path)
            else:
                raise ConfigurationError(
                    f"schema path {path} does not exist — give a .sql file, a directory of "
                    ".sql files, or fix the path (relative paths start at the working directory)"
                )
        return found

    def fingerprint(self) -> str:
        parts: list[str | bytes] = ["sql"]
        for file in self.files():
            parts += [file.name, file.read_bytes()]
        return digest(*parts)

    def migrate(self, connection: Connection) -> None:
        from freshdb.migrators import sql_splitter

        family = sql_family(connection)
        # What ran before (another migrator of a composed schema) is kept; the files
        # then run as the clients run them, each statement committed on its own.
        if connection.in_transaction():
            connection.commit()
        previous = connection.get_execution_options().get("isolation_level")
        connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            files = self.files()
            for number, file in enumerate(files, start=1):
                migration_progress(number, len(files), file.name)
                splitter = sql_splitter.StatementSplitter(file.read_text(), family)
                run_statements(connection, _following_the_session(connection, splitter), str(file))
        finally:
            if connection.in_transaction():
                connection.rollback()  # nothing is pending in autocommit mode
            connection.execution_options(
                isolation_level=previous or connection.default_isolation_level
            )


# pymysql's SERVER_STATUS_NO_BACKSLASH_ESCAPES: the server tells every reply whether
# sql_mode has NO_BACKSLASH_ESCAPES, and the mysql client reads strings accordingly.
_MYSQL_NO_BACKSLASH_ESCAPES = 512


def _following_the_session(
    connection: Connection, splitter: StatementSplitter
) -> Iterator[Statement]:
    """The splitter's statements, each read as the session left the one before it.

    A file may switch string syntax midway (``SET standard_conforming_strings = off``,
    ``SET sql_mode = 'NO_BACKSLASH_ESCAPES'``); psql and the mysql client follow what
    the server reports after each statement, and so does this.
    """
    for statement in splitter.statements():
        yield statement  # run_statements executes it before asking for the next
        splitter.backslash_escapes = _backslash_escapes(connection, splitter.backslash_escapes)


def _backslash_escapes(connection: Connection, current: bool) -> bool:
    driver_connection = connection.connection.driver_connection
    info = getattr(driver_connection, "info", None)  # psycopg 3
    parameter_status = getattr(info, "parameter_status", None)
    if callable(parameter_status):
        standard = parameter_status("standard_conforming_strings")
        return current if standard is None else str(standard) == "off"
    server_status = getattr(driver_connection, "server_status", None)  # PyMySQL
    if isinstance(server_status, int):
        return not server_status & _MYSQL_NO_BACKSLASH_ESCAPES
    return current  # another driver: keep the client's default


def _driver_error(connection: Connection) -> type[Exception]:
    from sqlalchemy.exc import DBAPIError

    error = getattr(connection.dialect.loaded_dbapi, "Error", None)
    return error if isinstance(error, type) and issubclass(error, Exception) else DBAPIError


def _copy_in(connection: Connection, statement: Statement) -> None:
    """Run a COPY ... FROM stdin with its inline data, through the driver's copy API."""
    data = statement.copy_data or ""
    cursor: Any = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if hasattr(cursor, "copy"):  # psycopg 3
            with cursor.copy(statement.sql) as copy:
                copy.write(data)
        elif hasattr(cursor, "copy_expert"):  # psycopg2
            cursor.copy_expert(statement.sql, io.StringIO(data))
        else:
            raise MigrationError(
                f"line {statement.line}: COPY ... FROM stdin needs the psycopg driver "
                "(the default) to send its data — use postgresql+psycopg URLs"
            )
    finally:
        cursor.close()


def run_statements(
    connection: Connection, statements: Iterator[Statement] | Sequence[Statement], source: str
) -> None:
    """Execute statements one by one; a failure names the file, line and statement."""
    from sqlalchemy.exc import DBAPIError

    from freshdb.migrators.sql_splitter import SqlSplitError

    number = 0
    try:
        for number, statement in enumerate(statements, start=1):
            try:
                if statement.copy_data is None:
                    connection.exec_driver_sql(
                        statement.sql, execution_options={"no_parameters": True}
                    )
                else:
                    _copy_in(connection, statement)
            except (DBAPIError, _driver_error(connection)) as exc:
                snippet = shortened_statement(statement.sql)
                reason = exc.orig if isinstance(exc, DBAPIError) else exc
                raise MigrationError(
                    f"{source}, statement {number} (line {statement.line}) failed: "
                    f"{str(reason).strip()}\n    {snippet}"
                ) from exc
    except SqlSplitError as exc:
        raise MigrationError(
            f"{source}, line {exc.line} (after statement {number}): {exc} — fix the file "
            "so that psql or the mysql client would run it"
        ) from exc
