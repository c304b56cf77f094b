"""The version policy: what an image's name says, and which servers are refused."""

from __future__ import annotations

import pytest

import freshdb
from freshdb.dialects.versions import (
    NEWEST,
    SERVERS,
    check_image,
    check_server,
    image_flavour,
    image_version,
    parse_reported_version,
    supported_servers,
)
from freshdb.errors import ConfigurationError, UnsupportedServerError

N = NEWEST[0]


@pytest.mark.parametrize(
    ("image", "flavour", "version"),
    [
        ("postgres:11", "postgres", (11, N, N)),
        ("postgres:17-alpine", "postgres", (17, N, N)),
        ("postgres", "postgres", NEWEST),
        ("postgis/postgis:17-3.5", "postgres", (17, N, N)),
        ("pgvector/pgvector:pg17", "postgres", (17, N, N)),
        ("freshdb-local/postgres:18", "postgres", (18, N, N)),
        ("mysql:5.7", "mysql", (5, 7, N)),
        ("mysql:8.0.36-debian", "mysql", (8, 0, 36)),
        ("mysql/mysql-server:8.0", "mysql", (8, 0, N)),
        ("bitnami/mysql:lts", "mysql", NEWEST),
        ("mariadb:10.3", "mariadb", (10, 3, N)),
        ("mariadb:v10.11", "mariadb", (10, 11, N)),
        ("registry.example:5000/team/mariadb:10.6.17", "mariadb", (10, 6, 17)),
        ("localhost/mysql:9", "mysql", (9, N, N)),
        ("mysql:8.4@sha256:" + "0" * 64, "mysql", (8, 4, N)),
        # Names that say nothing about the server: decided once it answers.
        ("registry.example:5000/db:1", None, (1, N, N)),
        ("percona/percona-server:8.0", None, (8, 0, N)),
        ("sha256:" + "ab12" * 16, None, NEWEST),
        ("125a518258fb", None, NEWEST),
        # Names two servers: not for the name to decide.
        ("team/postgres-mysql-bridge:2", None, (2, N, N)),
        # A registry host is not a name.
        ("mysql.example.com/team/db:5", None, (5, N, N)),
    ],
)
def test_what_an_image_name_says(image: str, flavour: str | None, version: tuple[int, ...]) -> None:
    assert image_flavour(image) == flavour
    assert image_version(image) == version


@pytest.mark.parametrize(
    ("engine", "image"),
    [
        ("postgres", "postgres:13"),
        ("postgres", "postgres:17"),
        ("postgres", "postgres"),
        ("postgres", "postgres:latest"),
        ("postgres", "freshdb-local/postgres:15"),
        ("mariadb", "mariadb:10.6"),
        ("mariadb", "freshdb-local/mariadb:11.8"),
        ("mysql", "mysql:8.0"),
        ("mysql", "mysql:8.4"),
        ("mysql", "freshdb-local/mysql:9"),
        ("mysql", "mariadb:10.11"),  # MySQL's clients speak to MariaDB
        ("mysql", "percona/percona-server:8.0"),  # says nothing: checked once it runs
        ("mariadb", "sha256:" + "ab12" * 16),
    ],
)
def test_supported_images_pass(engine: str, image: str) -> None:
    check_image(engine, image)


@pytest.mark.parametrize(
    ("engine", "image", "words"),
    [
        ("postgres", "postgres:11", "Postgres 11, older than freshdb supports (Postgres 13"),
        ("postgres", "postgres:9.6", "Postgres 9.6, older"),
        ("mysql", "mysql:5.7", "MySQL 5.7, older than freshdb supports (MySQL 8.0"),
        ("mariadb", "mariadb:10.3", "MariaDB 10.3, older than freshdb supports (MariaDB 10.6"),
        ("mariadb", "mariadb:10.5.2", "MariaDB 10.5.2, older"),
        ("postgres", "freshdb-local/mariadb:10.11", "engine 'postgres' runs Postgres, but"),
        ("mariadb", "freshdb-local/mysql:9", "engine 'mariadb' runs MariaDB, but"),
        ("mariadb", "mysql:8.4", "use engine='mysql'"),
        ("mysql", "postgres:17", "engine 'mysql' runs MySQL or MariaDB, but image"),
        ("mysql", "postgis/postgis:17-3.5", "use engine='postgres'"),
    ],
)
def test_unfit_images_are_refused_naming_what_is_supported(
    engine: str, image: str, words: str
) -> None:
    with pytest.raises(UnsupportedServerError) as caught:
        check_image(engine, image)
    message = str(caught.value)
    assert words in message
    assert repr(image) in message
    assert f"FRESHDB_{engine.upper()}_IMAGE" in message  # what to do next
    assert supported_servers() in message


def test_the_supported_lines_are_spelled_out() -> None:
    text = supported_servers()
    assert "Postgres 13 or newer (tested: 15, 17, 18)" in text
    assert "MariaDB 10.6 or newer (tested: 10.11, 11.8)" in text
    assert "MySQL 8.0 or newer (tested: 9.7; 8.4 by unit tests)" in text
    assert set(SERVERS) == {"postgres", "mysql", "mariadb"}


def test_an_unsupported_server_is_a_configuration_error_users_can_catch() -> None:
    assert issubclass(freshdb.UnsupportedServerError, ConfigurationError)
    assert issubclass(freshdb.UnsupportedServerError, freshdb.FreshDBError)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("9.7.4", (9, 7, 4)),
        ("10.11.18-MariaDB-0+deb12u1", (10, 11, 18)),
        ("8.0.36-0ubuntu0.22.04.1", (8, 0, 36)),
        ("11.8", (11, 8)),
        ("unknown", ()),
    ],
)
def test_reported_versions(text: str, version: tuple[int, ...]) -> None:
    assert parse_reported_version(text) == version


def test_a_server_that_answered_is_checked_by_what_it_reports() -> None:
    check_server("mysql", "mysql", (9, 7, 4), "the server")
    check_server("mysql", "mariadb", (10, 11, 18), "the server")
    check_server("postgres", "postgres", (13, 0), "the server")
    check_server("mysql", "mysql", (), "the server")  # no version to judge by
    with pytest.raises(UnsupportedServerError, match=r"the server at h:1 is MySQL 9\.7\.4"):
        check_server("mariadb", "mysql", (9, 7, 4), "the server at h:1", hint="use another")
    with pytest.raises(UnsupportedServerError, match=r"is Postgres 12\.22, older.*use another"):
        check_server("postgres", "postgres", (12, 22), "the server", hint="use another")
