"""What :class:`freshdb.engine_factory.EngineFactory` relies on in SQLAlchemy, pinned.

The factory initialises one engine's dialect normally and gives later engines what
that learned, through SQLAlchemy's private ``create_engine(_initialize=False)``
(the saving is measured in its docstring). These tests hold it to its promise on
the installed SQLAlchemy (2.0 and 2.1 are supported): the flag still skips the
first-connect initialisation, and an engine made this way has the dialect state
of a normally initialised one, for every sync driver, on Postgres and MySQL/MariaDB.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from freshdb.engine_factory import EngineFactory
from freshdb.migrators import CallableMigrator

pytestmark = [pytest.mark.docker, pytest.mark.server]

# What initialising sets on every dialect: the answers a copy's server gives.
INITIALISED = ("server_version_info", "default_schema_name", "default_isolation_level")


def one_table(connection: sa.Connection) -> None:
    """A template with one table."""
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY)")


SCHEMA = CallableMigrator(one_table, key="engine-factory-items")


def simple_state(dialect: Any) -> dict[str, Any]:
    """The dialect's plain attributes (numbers, strings, flags, tuples)."""
    return {
        key: value
        for key, value in vars(dialect).items()
        if isinstance(value, (str, int, float, bool, tuple, type(None)))
    }


@pytest.mark.parametrize(
    ("family", "driver"),
    [
        ("postgres", "psycopg"),
        ("postgres", "psycopg2"),
        ("mysql", "pymysql"),
        ("mysql", "mysqlclient"),
    ],
)
def test_engines_get_the_state_initialising_gives(
    sticky_family_server: Any, family: str, driver: str
) -> None:
    server = sticky_family_server(family, driver, schema=SCHEMA, pool_size=2)
    with server, server.database() as first, server.database() as second:
        # The private flag still means "do not initialise on first connect".
        bare = sa.create_engine(first.url, poolclass=sa.NullPool, _initialize=False)
        try:
            with bare.connect():
                pass
            assert bare.dialect.server_version_info is None
        finally:
            bare.dispose()

        factory = EngineFactory()
        factory.create(first.url).dispose()  # learns on the first copy
        learned = factory.create(second.url, poolclass=sa.NullPool)
        normal = sa.create_engine(second.url, poolclass=sa.NullPool)
        try:
            with normal.connect() as connection:
                expected_schema = connection.exec_driver_sql(
                    "SELECT current_schema()" if family == "postgres" else "SELECT DATABASE()"
                ).scalar_one()
            with learned.connect() as connection:
                assert connection.exec_driver_sql("SELECT count(*) FROM items").scalar_one() == 0
            for name in INITIALISED:
                assert getattr(learned.dialect, name) is not None, name
            assert learned.dialect.default_schema_name == expected_schema
            assert simple_state(learned.dialect) == simple_state(normal.dialect)
        finally:
            learned.dispose()
            normal.dispose()
