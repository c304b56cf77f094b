"""The pure parts of the MySQL dialect: its container, URLs and addresses, and the
driver errors it explains.
"""

from __future__ import annotations

import pytest

from freshdb.config import Settings
from freshdb.dialects.mysql import MySQLDialect


def test_container_spec_per_engine() -> None:
    dialect = MySQLDialect()
    assert dialect.default_image("mysql") == "mysql:9.7"
    assert dialect.default_image("mariadb") == "mariadb:11.4"
    mysql = dialect.container_spec(Settings(engine="mysql", max_connections=77), "mysql:8.4", "pw")
    assert mysql.environment["MYSQL_ROOT_PASSWORD"] == "pw"
    assert "--innodb-doublewrite=OFF" in mysql.command
    assert "--performance-schema=OFF" in mysql.command
    assert "--max-connections=77" in mysql.command
    mariadb = dialect.container_spec(Settings(engine="mariadb"), "mariadb:10.11", "pw")
    assert mariadb.environment["MARIADB_ROOT_PASSWORD"] == "pw"
    assert "--innodb-flush-method=nosync" in mariadb.command
    for spec in (mysql, mariadb):
        assert spec.port == 3306
        assert spec.admin_user == "root"
        assert spec.data_directory == "/var/lib/mysql"
        assert set(spec.password_variables) == {"MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"}


def test_urls_and_addresses() -> None:
    dialect = MySQLDialect()
    address = dialect.address_from_url("mariadb://root:secret@db.example/")
    assert (address.host, address.port, address.user, address.password) == (
        "db.example",
        3306,
        "root",
        "secret",
    )
    address = dialect.address_from_url("mysql://ci@127.0.0.1:13306/app")
    assert (address.port, address.user, address.admin_database) == (13306, "ci", "app")
    sync = dialect.sync_url(address, "copy1")
    assert sync.drivername == "mysql+pymysql"
    assert sync.database == "copy1"
    assert sync.query["ssl_disabled"] == "true"  # a TLS context costs ~20 ms per connect
    asynchronous = dialect.async_url(address, "copy1")
    assert asynchronous.drivername == "mysql+aiomysql"
    assert "ssl_disabled" not in asynchronous.query  # aiomysql would reject it
    assert dialect.sync_url(dialect.address_from_url("mysql://root@h")).database is None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1040, "ServerFullError"),
        (1045, "ConfigurationError"),
        (1114, "ServerFullError"),
        (1021, "ServerFullError"),
        (2003, "ServerUnavailableError"),
        (2013, "ServerUnavailableError"),
        (1064, None),
    ],
)
def test_driver_errors_are_explained(code: int, kind: str | None) -> None:
    import pymysql

    translated = MySQLDialect().translate_error(pymysql.err.OperationalError(code, "boom"))
    assert (type(translated).__name__ if translated else None) == kind


def test_disk_full_is_recognised_by_its_errno() -> None:
    import pymysql

    error = pymysql.err.InternalError(3, "Error writing file './x.frm' (Errcode: 28 \"No space\")")
    assert type(MySQLDialect().translate_error(error)).__name__ == "ServerFullError"


def test_a_missing_rsa_package_says_what_to_install() -> None:
    error = RuntimeError(
        "'cryptography' package is required for sha256_password or "
        "caching_sha2_password auth methods"
    )
    translated = MySQLDialect().translate_error(error)
    assert type(translated).__name__ == "ConfigurationError"
    assert "freshdb[mysql]" in str(translated)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (1114, "The table 'filler' is full"),
        (3675, "Create table/tablespace 'filler' failed, as disk is full"),
        (1005, 'Can\'t create table `c`.`filler` (errno: 135 "No more room in record file")'),
        (1030, 'Got error 28 "No space left on device" from storage engine InnoDB'),
    ],
)
def test_a_full_disk_is_a_server_full_error_in_every_wording(code: int, text: str) -> None:
    import pymysql

    from freshdb.errors import ServerFullError

    translated = MySQLDialect().translate_error(pymysql.err.OperationalError(code, text))
    assert isinstance(translated, ServerFullError)
    assert "FRESHDB_TMPFS_SIZE" in str(translated)
