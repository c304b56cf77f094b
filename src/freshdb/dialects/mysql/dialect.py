"""The MySQL/MariaDB :class:`~freshdb.dialects.base.Dialect`: the server, and databases.

Its ownership and template locks come from :class:`~.locks.MySQLLocks`, which it
extends; the rest of what is particular to these engines lives beside it:
:mod:`.flags` (server flags), :mod:`.startup` (the container's start), :mod:`.connection`,
:mod:`.errors`, :mod:`.schema` and :mod:`.copier`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pymysql

from freshdb import naming
from freshdb.config import Settings
from freshdb.dialects import versions
from freshdb.dialects.base import (
    ContainerSpec,
    CopyRecipe,
    DBAPIConnection,
    ServerAddress,
    ServerDefaults,
)
from freshdb.dialects.mysql import connection, copier, errors, startup
from freshdb.dialects.mysql.flags import image_flavour, server_flags
from freshdb.dialects.mysql.locks import MySQLLocks
from freshdb.dialects.mysql.statements import (
    execute,
    has_table,
    quote,
    quote_database,
    rows_of,
    run_script,
)
from freshdb.errors import FreshDBError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

_SERVER_VERSION = re.compile(r"^(\d+)\.(\d+)")


class MySQLDialect(MySQLLocks):
    """MySQL 8.0 and MariaDB 10.6 or newer (the policy is in :mod:`freshdb.dialects.versions`)."""

    family = "mysql"
    sqlalchemy_name = "mysql"
    # A long-term-support release of each. For MySQL, the 9.7 line is the one the test
    # suite runs for real (8.4's flag choices are unit-tested only).
    defaults = ServerDefaults(3306, "root", "", {"mysql": "mysql:9.7", "mariadb": "mariadb:11.4"})

    # -- the server ------------------------------------------------------------

    def container_spec(self, settings: Settings, image: str, password: str) -> ContainerSpec:
        flavour = image_flavour(settings.engine, image)
        command = server_flags(flavour, versions.image_version(image), settings.max_connections)
        # Both images' variables: MariaDB's image reads MYSQL_* as aliases and MySQL's
        # ignores MARIADB_*, so an image whose name does not tell which server it runs
        # still starts, and the server's reported version then tells (and is checked).
        environment = {
            "MARIADB_ROOT_PASSWORD": password,
            "MYSQL_ROOT_PASSWORD": password,
            # Loading time zone tables takes seconds at first start; tests need none.
            "MARIADB_INITDB_SKIP_TZINFO": "1",
            "MYSQL_INITDB_SKIP_TZINFO": "1",
        }
        return ContainerSpec(
            port=self.defaults.port,
            environment=environment,
            command=command,
            admin_user=self.defaults.user,
            admin_database=self.defaults.admin_database,
            password_variables=("MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"),
            data_directory="/var/lib/mysql",
            # One server start instead of the official entrypoint's two (see .startup).
            entrypoint=startup.ENTRYPOINT if settings.direct_start else (),
        )

    def sync_url(self, address: ServerAddress, database: str | None = None) -> URL:
        # PyMySQL builds a TLS context on every connect (~20 ms) unless told not to.
        return connection.url("pymysql", address, database, {"ssl_disabled": "true"})

    def async_url(self, address: ServerAddress, database: str | None = None) -> URL:
        # aiomysql uses TLS only when given a context: nothing to disable.
        return connection.url("aiomysql", address, database)

    def connect(
        self, address: ServerAddress, database: str | None = None, timeout: float = 10.0
    ) -> DBAPIConnection:
        with self.explained_errors(pymysql.Error, RuntimeError):
            return connection.connect(address, database, timeout)

    def server_version(self, conn: DBAPIConnection) -> str:
        version = str(self.scalar(conn, "SELECT VERSION()"))
        flavour = "mariadb" if "mariadb" in version.lower() else "mysql"
        match = _SERVER_VERSION.match(version)
        return f"{flavour} {match.group(1)}.{match.group(2)}" if match else f"{flavour} {version}"

    def server_identity(self, conn: DBAPIConnection) -> str | None:
        # In a container, the host name is the container's own (Docker names it by
        # its id): a foreign server, or a container created again, answers another.
        return str(self.scalar(conn, "SELECT @@hostname"))

    def server_release(self, conn: DBAPIConnection) -> tuple[versions.Flavour, tuple[int, ...]]:
        version = str(self.scalar(conn, "SELECT VERSION()"))
        # MariaDB says so in its version ("10.11.18-MariaDB-0+deb12u1"); MySQL does not.
        flavour: versions.Flavour = "mariadb" if "mariadb" in version.lower() else "mysql"
        return flavour, versions.parse_reported_version(version)

    def translate_error(self, exc: BaseException) -> Exception | None:
        return errors.translate_error(exc)

    def connection_fileno(self, conn: DBAPIConnection) -> int | None:
        # PyMySQL has no fileno(); its socket is dropped (None) once the connection is.
        sock = getattr(conn, "_sock", None)
        return -1 if sock is None else int(sock.fileno())

    # -- databases --------------------------------------------------------------
    def list_databases(self, conn: DBAPIConnection, prefix: str) -> list[str]:
        rows = self.rows(
            conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
            "ORDER BY SCHEMA_NAME",
            (naming.database_like_pattern(prefix),),
        )
        return [str(row[0]) for row in rows]

    def database_exists(self, conn: DBAPIConnection, name: str) -> bool:
        return bool(
            self.scalar(
                conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
            )
        )

    def create_database(self, conn: DBAPIConnection, name: str) -> None:
        execute(conn, f"CREATE DATABASE {quote_database(name)}")

    def drop_database(self, conn: DBAPIConnection, name: str) -> None:
        self._disconnect_users(conn, name)
        execute(conn, f"DROP DATABASE IF EXISTS {quote_database(name)}")

    def _disconnect_users(self, conn: DBAPIConnection, name: str) -> None:
        sessions = self.rows(
            conn,
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            (name,),
        )
        for (session,) in sessions:
            try:
                execute(conn, f"KILL CONNECTION {int(session)}")
            except pymysql.Error as exc:
                if exc.args and exc.args[0] == errors.UNKNOWN_THREAD:
                    continue  # it ended meanwhile
                raise

    def template_is_complete(self, conn: DBAPIConnection, template: str) -> bool:
        return has_table(conn, template, naming.COMPLETION_MARKER_TABLE)

    def build_database_name(self, template: str, build: str) -> str:
        # No RENAME DATABASE: build in place; the marker table is the commit point.
        return template

    def complete_template(
        self, conn: DBAPIConnection, build: str, template: str, comment: str
    ) -> None:
        if build != template:
            self.rename_database(conn, build, template)
        pending = f"{quote_database(template)}.{quote(naming.COMPLETION_MARKER_PENDING_TABLE)}"
        execute(conn, f"DROP TABLE IF EXISTS {pending}")
        execute(conn, f"CREATE TABLE {pending} (comment LONGTEXT NOT NULL)")
        execute(conn, f"INSERT INTO {pending} (comment) VALUES (%s)", (comment,))
        # RENAME TABLE is atomic: the marker appears complete, with its row, or not at all.
        marker = f"{quote_database(template)}.{quote(naming.COMPLETION_MARKER_TABLE)}"
        execute(conn, f"RENAME TABLE {pending} TO {marker}")

    def copy_recipe(self, conn: DBAPIConnection, template: str) -> copier.MySQLCopyRecipe:
        return copier.copy_recipe(conn, template)

    def clone(self, conn: DBAPIConnection, recipe: CopyRecipe, name: str) -> None:
        if not isinstance(recipe, copier.MySQLCopyRecipe):
            raise FreshDBError(f"the copy recipe of {recipe.template} was not made by MySQL")
        run_script(conn, copier.clone_script(recipe, name))

    def copy_database(self, conn: DBAPIConnection, source: str, name: str, timeout: float) -> None:
        # A database in use may hold uncommitted rows: INSERT … SELECT reads what is
        # committed without waiting on their locks only under READ COMMITTED (which
        # such a statement may use since freshdb's servers keep no binary log).
        execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        try:
            super().copy_database(conn, source, name, timeout)
        finally:
            execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def rename_database(self, conn: DBAPIConnection, old: str, new: str) -> None:
        self._disconnect_users(conn, old)
        run_script(conn, copier.rename_script(conn, old, new))

    def database_sizes(self, conn: DBAPIConnection, names: Sequence[str]) -> dict[str, int]:
        rows = rows_of(
            conn,
            "SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) "
            "FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t "
            "ON t.TABLE_SCHEMA = s.SCHEMA_NAME WHERE s.SCHEMA_NAME IN ({names}) "
            "GROUP BY s.SCHEMA_NAME",
            names,
        )
        return {str(name): int(size) for name, size in rows}

    def database_comment(self, conn: DBAPIConnection, name: str) -> str | None:
        # Databases have no comments here: the template's lives in its marker table.
        if not has_table(conn, name, naming.COMPLETION_MARKER_TABLE):
            return None
        value = self.scalar(
            conn,
            f"SELECT comment FROM {quote_database(name)}.{quote(naming.COMPLETION_MARKER_TABLE)} "
            "LIMIT 1",
        )
        return None if value is None else str(value)

    def set_template_comment(self, conn: DBAPIConnection, template: str, comment: str) -> None:
        # The marker table is never copied, so neither is what it says.
        marker = f"{quote_database(template)}.{quote(naming.COMPLETION_MARKER_TABLE)}"
        execute(conn, f"UPDATE {marker} SET comment = %s", (comment,))

    def database_created(
        self, conn: DBAPIConnection, names: Sequence[str]
    ) -> dict[str, dt.datetime]:
        # Databases have no creation time here; their tables' files do. A kept copy's
        # tables were moved when it was kept, so its age counts from then.
        rows = rows_of(
            conn,
            "SELECT TABLE_SCHEMA, UNIX_TIMESTAMP(MIN(CREATE_TIME)) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA IN ({names}) AND CREATE_TIME IS NOT NULL GROUP BY TABLE_SCHEMA",
            names,
        )
        return {
            str(name): dt.datetime.fromtimestamp(float(stamp), dt.UTC)
            for name, stamp in rows
            if stamp is not None
        }
