"""Server flags per flavour and version (freshdb.dialects.mysql.flags).

MySQL 9.7 and MariaDB run under the integration tests; the choices for MySQL 8.4
and older releases are pinned down here.
"""

from __future__ import annotations

import pytest

from freshdb.dialects.mysql.flags import image_flavour, server_flags
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
