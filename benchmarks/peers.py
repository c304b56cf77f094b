"""The peers' ways of getting a fresh database, as each of them does it.

- pytest-postgresql: ``DatabaseJanitor`` makes a template per session (loaded from
  the SQL file) and, per test, clones it while the test waits, connects with
  psycopg, and drops the clone afterwards (terminating its connections first). The
  functions here call the real ``DatabaseJanitor``, the way its ``postgresql_noproc``
  and ``postgresql`` fixture factories do.
- elefast needs Python >= 3.14 and cannot be installed next to freshdb (3.11), so
  :class:`NaiveCloneServer` reproduces its sync path statement for statement:
  ``CREATE DATABASE ... WITH TEMPLATE`` on a ``NullPool`` autocommit admin engine, a
  new engine per database, and ``DROP DATABASE`` right after ``engine.dispose()``.
  Every figure made with it is labelled "naive clone+drop (elefast's path)".
- Django on MySQL/MariaDB clones a test database with ``mysqldump | mysql``:
  :func:`dump_and_load` runs exactly that inside the MariaDB container.

The suites' generated conftests import this module too, so a peer's per-test path
is the same code in the per-test figures and in the 200-test suites.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from freshdb import naming
from freshdb.dialects.base import ServerAddress

NAIVE_LABEL = "naive clone+drop (elefast's path)"


# -- pytest-postgresql ------------------------------------------------------------------
def _janitor(address: ServerAddress, dbname: str, **options: Any) -> Any:
    from pytest_postgresql.janitor import DatabaseJanitor

    return DatabaseJanitor(
        user=address.user,
        host=address.host,
        port=address.port,
        password=address.password,
        dbname=dbname,
        **options,
    )


def janitor_template(address: ServerAddress, name: str, schema_sql: Any) -> None:
    """pytest-postgresql's session template: ``as_template=True``, then ``load``."""
    janitor = _janitor(address, name, as_template=True)
    janitor.drop()
    janitor.init()
    janitor.load(schema_sql)


def drop_janitor_template(address: ServerAddress, name: str) -> None:
    """Drop a template made by :func:`janitor_template`."""
    _janitor(address, name, as_template=True).drop()


@contextlib.contextmanager
def janitor_database(address: ServerAddress, template: str) -> Iterator[psycopg.Connection]:
    """One test's database, as pytest-postgresql's ``postgresql`` fixture makes it."""
    name = f"peer_ppg_{uuid.uuid4().hex[:12]}"
    with _janitor(address, name, template_dbname=template):
        connection = psycopg.connect(
            host=address.host,
            port=address.port,
            user=address.user,
            password=address.password,
            dbname=name,
        )
        try:
            yield connection
        finally:
            connection.close()


# -- elefast's path -------------------------------------------------------------------
class NaiveCloneServer:
    """Clone per test, drop after it, while the test waits (elefast's sync path)."""

    def __init__(self, admin_url: str, template: str) -> None:
        self.template = template
        self._admin = sqlalchemy.create_engine(
            admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )

    @contextlib.contextmanager
    def database(self) -> Iterator[Engine]:
        """A fresh clone of the template with its own engine; dropped on exit."""
        name = f"peer_naive_{uuid.uuid4().hex[:12]}"
        with self._admin.begin() as connection:
            connection.exec_driver_sql(
                f'CREATE DATABASE "{name}" WITH TEMPLATE "{self.template}" ENCODING \'utf8\''
            )
        engine = sqlalchemy.create_engine(self._admin.url.set(database=name))
        try:
            yield engine
        finally:
            engine.dispose()
            with self._admin.begin() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}"')

    def close(self) -> None:
        """Let go of the admin engine."""
        self._admin.dispose()


# -- Django on MySQL/MariaDB --------------------------------------------------------------
def dump_and_load(container: Any, address: ServerAddress, template: str, target: str) -> None:
    """Django's MySQL clone: ``CREATE DATABASE``, then ``mysqldump | mysql`` in the container.

    freshdb's completion marker table is left out of the dump: it is not part of the
    schema, and leaving it in would make the peer copy one table more.
    """
    command = (
        'mariadb-dump -uroot --routines --events --ignore-table="$1.$3" "$1" | mariadb -uroot "$2"'
    )
    marker = naming.COMPLETION_MARKER_TABLE
    admin = _mysql_connect(address)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{target}`")
    finally:
        admin.close()
    exit_code, output = container.exec_run(
        ["bash", "-c", f"set -o pipefail; {command}", "bash", template, target, marker],
        environment={"MYSQL_PWD": address.password},
    )
    if exit_code != 0:
        raise RuntimeError(f"mariadb-dump | mariadb failed ({exit_code}): {output!r}")


def drop_mysql_database(address: ServerAddress, name: str) -> None:
    """Drop a database on the MariaDB server."""
    admin = _mysql_connect(address)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


def _mysql_connect(address: ServerAddress) -> Any:
    import pymysql

    return pymysql.connect(
        host=address.host,
        port=address.port,
        user=address.user,
        password=address.password,
        autocommit=True,
        ssl_disabled=True,
    )
