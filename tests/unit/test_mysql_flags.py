"""Server flags per flavour and version, and the pure parts of the MySQL dialect.

MySQL 9.7 and MariaDB run under the integration tests; the choices for MySQL 8.4
and older releases are pinned down here.
"""

from __future__ import annotations

import pytest

from freshdb.config import Settings
from freshdb.dialects.mysql import MySQLDialect
from freshdb.dialects.mysql.flags import image_flavour, server_flags
from freshdb.dialects.mysql.schema import SchemaObjects, order_views
from freshdb.dialects.mysql.statements import ProgramDefinition
from freshdb.dialects.versions import NEWEST, image_version


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("mysql:8.4", (8, 4, NEWEST[0])),
        ("mysql:8.0.19", (8, 0, 19)),
        ("mysql:8.0.36-debian", (8, 0, 36)),
        ("mysql:8", (8, NEWEST[0], NEWEST[0])),
        ("mariadb:11.4", (11, 4, NEWEST[0])),
        ("freshdb-local/mariadb:10.11", (10, 11, NEWEST[0])),
        ("registry.example:5000/team/mariadb:10.6.17", (10, 6, 17)),
        ("mysql", NEWEST),
        ("mysql:lts", NEWEST),
        ("mariadb:latest", NEWEST),
        ("mysql:8.4@sha256:" + "0" * 64, (8, 4, NEWEST[0])),
    ],
)
def test_image_version_from_the_tag(image: str, version: tuple[int, ...]) -> None:
    assert image_version(image) == version


@pytest.mark.parametrize(
    ("engine", "image", "flavour"),
    [
        ("mysql", "mysql:8.4", "mysql"),
        ("mariadb", "mariadb:11.4", "mariadb"),
        ("mysql", "mariadb:10.11", "mariadb"),  # the image's server decides the flags
        ("mariadb", "freshdb-local/mariadb:10.11", "mariadb"),
        ("mysql", "percona/percona-server:8.0", "mysql"),
        ("mariadb", "registry.example:5000/db:1", "mariadb"),
        ("mysql", "registry.example:5000/team/mariadb", "mariadb"),
    ],
)
def test_flavour_from_the_image_then_the_engine(engine: str, image: str, flavour: str) -> None:
    assert image_flavour(engine, image) == flavour


def test_mysql_84_flags() -> None:
    flags = server_flags("mysql", image_version("mysql:8.4"), 300)
    assert "--innodb-flush-log-at-trx-commit=0" in flags
    assert "--innodb-doublewrite=OFF" in flags
    assert "--skip-log-bin" in flags  # the binary log is on by default in MySQL 8
    assert "--performance-schema=OFF" in flags
    assert "--mysqlx=OFF" in flags
    assert "--max-connections=300" in flags
    # nosync is MariaDB's; O_DIRECT cannot be used on tmpfs.
    assert "--innodb-flush-method=fsync" in flags
    assert not any("nosync" in flag or "O_DIRECT" in flag for flag in flags)
    # Removed in MySQL 8.4: the server would refuse to start.
    assert not any("default-authentication-plugin" in flag for flag in flags)


def test_mysql_before_8_0_20_spells_doublewrite_as_a_boolean() -> None:
    old = server_flags("mysql", image_version("mysql:8.0.19"), 300)
    assert "--innodb-doublewrite=0" in old
    assert "--innodb-doublewrite=OFF" not in old
    assert "--innodb-doublewrite=OFF" in server_flags("mysql", (8, 0, 20), 300)


def test_mysql_5_7_gets_no_x_plugin_flag() -> None:
    flags = server_flags("mysql", image_version("mysql:5.7"), 300)
    assert not any(flag.startswith("--mysqlx") for flag in flags)
    assert "--mysqlx=OFF" in server_flags("mysql", image_version("mysql:8.0.11"), 300)


def test_mariadb_flags() -> None:
    flags = server_flags("mariadb", image_version("mariadb:10.11"), 150)
    assert "--innodb-flush-method=nosync" in flags
    assert "--innodb-doublewrite=0" in flags  # a Boolean here, an ENUM from 11.x: 0 fits both
    assert "--skip-log-bin" in flags
    assert "--max-connections=150" in flags
    # MariaDB has no X plugin, and performance schema is already off.
    assert not any(flag.startswith(("--mysqlx", "--performance-schema")) for flag in flags)


def test_mariadb_11_leaves_the_deprecated_flush_method_alone() -> None:
    for image in ("mariadb:11.4", "mariadb:lts", "mariadb"):
        flags = server_flags("mariadb", image_version(image), 300)
        assert not any(flag.startswith("--innodb-flush-method") for flag in flags), image
        assert "--innodb-doublewrite=0" in flags


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


def test_views_are_ordered_after_the_views_they_read() -> None:
    views = [
        ("top", "CREATE VIEW `top` AS select `middle`.`id` AS `id` from `middle`"),
        ("middle", "CREATE VIEW `middle` AS select `base`.`id` AS `id` from `base`"),
        ("base", "CREATE VIEW `base` AS select `t`.`id` AS `id` from `t`"),
        ("alone", "CREATE VIEW `alone` AS select 1 AS `x`"),
    ]
    ordered = order_views(views)
    position = {ddl.split("`")[1]: index for index, ddl in enumerate(ordered)}
    assert position["base"] < position["middle"] < position["top"]
    assert len(ordered) == 4


def test_view_cycles_fall_back_to_the_given_order() -> None:
    views = [
        ("a", "CREATE VIEW `a` AS select `b` AS `b` from `t`"),
        ("b", "CREATE VIEW `b` AS select `a` AS `a` from `t`"),
    ]
    assert order_views(views) == [ddl for _, ddl in views]


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


def test_each_program_ends_its_round_trip_and_events_keep_their_time_zone() -> None:
    objects = SchemaObjects(
        character_set="utf8mb4",
        collation="utf8mb4_0900_ai_ci",
        tables=(("t", "CREATE TABLE `t` (`id` int)"),),
        programs=(
            (
                "STRICT_TRANS_TABLES",
                None,
                "CREATE TRIGGER `a` BEFORE INSERT ON `t` FOR EACH ROW SET @x = 1",
            ),
            (
                "STRICT_TRANS_TABLES",
                "SYSTEM",
                "CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DO DELETE FROM `t`",
            ),
        ),
    )
    statements = objects.replay(with_tables=True)
    programs = [s for s in statements if isinstance(s, ProgramDefinition)]
    assert [p.split("`")[1] for p in programs] == ["a", "e"]
    event = statements.index(programs[1])
    assert statements[event - 1] == "SET SESSION time_zone = 'SYSTEM'"
    assert statements.index(programs[0]) < event
    assert "time_zone = DEFAULT" in statements[-1]  # the session is left as it was


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
