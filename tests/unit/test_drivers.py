"""Which driver a setting chooses, and the addresses each driver is given."""

from __future__ import annotations

import sys

import pytest
from sqlalchemy.engine import make_url

from freshdb.config import resolve_settings
from freshdb.database import Database
from freshdb.drivers import DRIVERS, ConnectionParts, configured_driver, lookup
from freshdb.engine_factory import EngineFactory
from freshdb.errors import ConfigurationError

POSTGRES = ConnectionParts("postgres", "127.0.0.1", 5433, "postgres", "s3cr@t/", "copy1")
MYSQL = ConnectionParts("mysql", "127.0.0.1", 3307, "root", "pw", "copy1")


def test_unset_the_family_defaults_are_psycopg_and_pymysql() -> None:
    assert configured_driver(None, "postgres").name == "psycopg"
    assert configured_driver("", "mariadb").name == "pymysql"
    assert configured_driver(None, "mysql").name == "pymysql"


@pytest.mark.parametrize(
    ("setting", "engine", "chosen"),
    [
        ("psycopg2", "postgres", "psycopg2"),
        ("ASYNCPG", "postgres", "asyncpg"),
        ("mysqldb", "mariadb", "mysqlclient"),
        ("psycopg2, mysqlclient", "postgres", "psycopg2"),
        ("psycopg2,mysqlclient", "mysql", "mysqlclient"),
    ],
)
def test_a_setting_names_one_driver_or_one_per_family(
    setting: str, engine: str, chosen: str
) -> None:
    assert configured_driver(setting, engine).name == chosen


def test_an_unknown_driver_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown driver 'psycopg4'") as error:
        configured_driver("psycopg4", "postgres")
    for name in DRIVERS:
        assert repr(name) in str(error.value)


def test_a_driver_of_the_other_family_is_refused_with_the_familys_drivers() -> None:
    with pytest.raises(ConfigurationError, match="'psycopg2' speaks to Postgres") as error:
        configured_driver("psycopg2", "mariadb")
    message = str(error.value)
    assert "'pymysql' (default)" in message and "'asyncmy'" in message
    assert "'asyncpg'" not in message


def test_two_drivers_of_one_family_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="names two Postgres drivers"):
        configured_driver("psycopg2,pg8000", "postgres")


def test_the_setting_comes_from_the_environment_and_is_checked_there() -> None:
    settings = resolve_settings(environ={"FRESHDB_DRIVER": "asyncpg"}, pyproject=False)
    assert settings.driver == "asyncpg"
    with pytest.raises(ConfigurationError, match="speaks to Postgres"):
        resolve_settings(
            environ={"FRESHDB_DRIVER": "asyncpg", "FRESHDB_ENGINE": "mariadb"}, pyproject=False
        )


@pytest.mark.parametrize(
    ("driver", "drivername"),
    [(name, driver.sqlalchemy_name) for name, driver in DRIVERS.items()],
)
def test_each_driver_gets_its_sqlalchemy_url_with_the_same_parts(
    driver: str, drivername: str
) -> None:
    parts = POSTGRES if DRIVERS[driver].family == "postgres" else MYSQL
    url = parts.url(driver)
    assert url.drivername == drivername
    assert (url.host, url.port, url.username, url.password, url.database) == (
        parts.host,
        parts.port,
        parts.user,
        parts.password,
        parts.database,
    )
    # What SQLAlchemy hands the driver reaches the same place.
    rendered = make_url(url.render_as_string(hide_password=False))
    assert rendered.password == parts.password


def test_only_pymysql_urls_turn_tls_off() -> None:
    assert MYSQL.url("pymysql").query == {"ssl_disabled": "true"}
    assert MYSQL.url("mysqlclient").query == {}
    assert POSTGRES.url("psycopg2").query == {}


def test_the_dsn_is_a_plain_uri_with_the_password_escaped() -> None:
    assert POSTGRES.dsn() == "postgresql://postgres:s3cr%40t%2F@127.0.0.1:5433/copy1"
    assert MYSQL.dsn() == "mysql://root:pw@127.0.0.1:3307/copy1"


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("psycopg", {"dbname": "copy1", "password": "pw"}),
        ("pg8000", {"database": "copy1", "password": "pw"}),
        ("pymysql", {"database": "copy1", "password": "pw", "ssl_disabled": True}),
        ("aiomysql", {"db": "copy1", "password": "pw"}),
        ("asyncmy", {"database": "copy1", "password": "pw"}),
    ],
)
def test_connect_args_use_each_drivers_own_keywords(
    driver: str, expected: dict[str, object]
) -> None:
    family = DRIVERS[driver].family
    parts = ConnectionParts(family, "db.local", 1234, "me", "pw", "copy1")
    assert parts.connect_args(driver) == {
        "host": "db.local",
        "port": 1234,
        "user": "me",
        **expected,
    }


def test_a_wrong_family_driver_for_an_address_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="speaks to MySQL/MariaDB servers"):
        POSTGRES.url("aiomysql")
    with pytest.raises(ConfigurationError, match="unknown driver"):
        lookup("oracle", "postgres")


def test_the_password_never_shows_in_a_repr() -> None:
    assert "s3cr" not in repr(POSTGRES)
    database = Database(POSTGRES, release=lambda keep: None, driver=DRIVERS["psycopg2"])
    assert "s3cr" not in repr(database)
    database.release()


def test_a_database_follows_its_driver_and_keeps_a_sync_and_an_async_url() -> None:
    released: list[bool] = []
    database = Database(POSTGRES, release=released.append, driver=DRIVERS["asyncpg"])
    assert (database.host, database.port, database.user, database.password, database.name) == (
        "127.0.0.1",
        5433,
        "postgres",
        "s3cr@t/",
        "copy1",
    )
    assert database.driver == "asyncpg"
    assert database.url.drivername == "postgresql+asyncpg"
    assert database.async_url.drivername == "postgresql+asyncpg"
    assert database.url_for("psycopg2").drivername == "postgresql+psycopg2"
    assert database.connect_args()["database"] == "copy1"  # asyncpg's keyword
    database.release()
    assert released == [False]

    plain = Database(MYSQL, release=released.append)
    assert plain.url.drivername == "mysql+pymysql"
    assert plain.async_url.drivername == "mysql+aiomysql"
    plain.release()


def test_a_driver_that_is_not_installed_is_said_with_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 now fails
    with pytest.raises(ConfigurationError, match="pip install psycopg2-binary"):
        EngineFactory().create(POSTGRES.url("psycopg2"))
    database = Database(POSTGRES, release=lambda keep: None, driver=DRIVERS["psycopg2"])
    with pytest.raises(ConfigurationError, match="pip install psycopg2-binary"):
        database.engine()
    database.release()
