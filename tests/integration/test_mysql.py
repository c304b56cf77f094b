"""Real MySQL (not MariaDB): copies, logins, server flags and the version checks.

MySQL differs from MariaDB where freshdb feels it: utf8mb4_0900_ai_ci defaults,
caching_sha2_password logins over freshdb's TLS-less connections, and its own
server options. The copy checks are the MySQL family's shared ones.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import freshdb
from freshdb import naming
from freshdb.backends.docker import DockerBackend
from freshdb.backends.sticky import state_directory
from freshdb.dialects.mysql import MySQLDialect

from ..conftest import RUN_PREFIX
from .mysql_family import (
    admin,
    assert_copy_behaves_like_the_template,
    assert_copy_is_the_template_twin,
    assert_kept_copy_has_everything,
    assert_writes_stay_in_their_copy,
    write_rich_schema,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def rich_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rich_schema(tmp_path_factory, "mysql")


@pytest.fixture(scope="module")
def server(
    run_prefix: str, mysql_image: str, rich_schema: Path
) -> Iterator[freshdb.DatabaseServer]:
    with freshdb.DatabaseServer(
        "mysql",
        image=mysql_image,
        mode="sticky",
        prefix=run_prefix,
        schema=rich_schema,
        pool_size=2,
    ) as server:
        yield server


def test_the_server_is_mysql_9(server: freshdb.DatabaseServer) -> None:
    with admin(server).connect() as conn:
        version = str(conn.exec_driver_sql("SELECT VERSION()").scalar())
    assert "mariadb" not in version.lower()
    assert version.startswith("9.")


# -- copies -------------------------------------------------------------------------------
def test_a_copy_is_the_template_twin(server: freshdb.DatabaseServer) -> None:
    assert_copy_is_the_template_twin(server)


def test_a_copy_behaves_like_the_template(server: freshdb.DatabaseServer) -> None:
    assert_copy_behaves_like_the_template(server)


def test_a_write_in_one_copy_is_invisible_in_the_next(server: freshdb.DatabaseServer) -> None:
    assert_writes_stay_in_their_copy(server)


def test_a_kept_copy_is_renamed_with_everything_in_it(server: freshdb.DatabaseServer) -> None:
    assert_kept_copy_has_everything(server)


def test_columns_of_a_bare_character_set_copy_faithfully(
    server: freshdb.DatabaseServer, run_prefix: str, mysql_image: str, tmp_path: Path
) -> None:
    # Columns declared with a bare CHARACTER SET take that set's default collation
    # (utf8mb4_0900_ai_ci on MySQL 8+): the copy's must print the same, in
    # SHOW CREATE TABLE, as the template's.
    schema = tmp_path / "charsets.sql"
    schema.write_text(
        f"CREATE TABLE bare_{tmp_path.name[-6:]} (\n"
        "  a VARCHAR(10) CHARACTER SET utf8mb4,\n"
        "  b VARCHAR(10),\n"
        "  c TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci\n"
        ") DEFAULT CHARSET=utf8mb4;\n"
        f"INSERT INTO bare_{tmp_path.name[-6:]} VALUES ('x', 'y', 'z');\n"
    )
    table = f"bare_{tmp_path.name[-6:]}"
    with (
        freshdb.DatabaseServer(
            "mysql", image=mysql_image, mode="sticky", prefix=run_prefix, schema=schema
        ) as other,
        other.database() as db,
        admin(other).connect() as conn,
    ):
        shown = []
        for database in (str(other.template), db.name):
            conn.exec_driver_sql(f"USE `{database}`")
            shown.append(str(conn.exec_driver_sql(f"SHOW CREATE TABLE `{table}`").one()[1]))
        conn.exec_driver_sql("USE information_schema")
        assert shown[0] == shown[1]


# -- logins: caching_sha2_password without TLS ---------------------------------------------
def test_the_admin_logs_in_with_caching_sha2_password(server: freshdb.DatabaseServer) -> None:
    with admin(server).connect() as conn:
        plugin = conn.exec_driver_sql(
            "SELECT plugin FROM mysql.user WHERE user = %s AND host = '%%'",
            (server.address.user,),
        ).scalar()
        tls = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1]
    assert plugin == "caching_sha2_password"
    assert tls == ""  # freshdb's connections are TLS-less on loopback


@pytest.fixture
def new_user(server: freshdb.DatabaseServer) -> Iterator[tuple[str, str]]:
    """A user who never logged in: its first login is a full caching_sha2 exchange."""
    user, password = f"u{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    with admin(server).connect() as conn:
        conn.exec_driver_sql(
            f"CREATE USER '{user}'@'%%' IDENTIFIED WITH caching_sha2_password BY '{password}'"
        )
        conn.exec_driver_sql(f"GRANT ALL ON *.* TO '{user}'@'%%'")
    yield user, password
    with admin(server).connect() as conn:
        conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")


def _as(address: Any, user: str, password: str) -> Any:
    return type(address)(address.host, address.port, user, password, address.admin_database)


def test_first_logins_without_tls_through_freshdb_s_connections(
    server: freshdb.DatabaseServer, new_user: tuple[str, str]
) -> None:
    # Admin and pool connections: the dialect's own connect().
    address = _as(server.address, *new_user)
    dialect = server.dialect
    conn = dialect.connect(address)
    try:
        assert dialect.scalar(conn, "SELECT CURRENT_USER()") == f"{new_user[0]}@%"
    finally:
        conn.close()


def test_first_logins_without_tls_through_the_sync_url(
    server: freshdb.DatabaseServer, new_user: tuple[str, str]
) -> None:
    url = server.dialect.sync_url(_as(server.address, *new_user))
    assert url.query["ssl_disabled"] == "true"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT CURRENT_USER()").scalar() == f"{new_user[0]}@%"
            assert conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1] == ""
    finally:
        engine.dispose()


def test_first_logins_without_tls_through_the_async_url(
    server: freshdb.DatabaseServer, new_user: tuple[str, str]
) -> None:
    url = server.dialect.async_url(_as(server.address, *new_user))

    async def main() -> str:
        engine = create_async_engine(url, poolclass=sa.NullPool)
        try:
            async with engine.connect() as conn:
                return str((await conn.exec_driver_sql("SELECT CURRENT_USER()")).scalar())
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == f"{new_user[0]}@%"


def test_a_wrong_password_is_explained(
    server: freshdb.DatabaseServer, new_user: tuple[str, str]
) -> None:
    address = _as(server.address, new_user[0], "not-" + new_user[1])
    with pytest.raises(freshdb.ConfigurationError, match="check the user and password"):
        server.dialect.connect(address)


def test_async_copies(server: freshdb.DatabaseServer) -> None:
    async def main() -> tuple[str, int]:
        async with server.adatabase() as db:
            assert db.async_url.drivername == "mysql+aiomysql"
            async with db.async_engine().connect() as conn:
                await conn.exec_driver_sql("INSERT INTO authors (name, email) VALUES ('A', 'a@b')")
                await conn.commit()
                count = (await conn.exec_driver_sql("SELECT COUNT(*) FROM authors")).scalar()
            return db.name, int(count or 0)

    name, count = asyncio.run(main())
    assert count == 3
    assert name.startswith(f"{server.settings.prefix}_c_")


# -- the server's flags -------------------------------------------------------------------
def test_mysql_s_own_server_flags_apply(server: freshdb.DatabaseServer) -> None:
    with admin(server).connect() as conn:
        variables = {
            str(name): str(value) for name, value in conn.exec_driver_sql("SHOW GLOBAL VARIABLES")
        }
        x_plugin = conn.exec_driver_sql(
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'mysqlx'"
        ).scalar()
    expected = {
        "innodb_flush_log_at_trx_commit": "0",
        "innodb_doublewrite": "OFF",
        "log_bin": "OFF",
        "performance_schema": "OFF",
        "skip_name_resolve": "ON",
        "innodb_flush_method": "fsync",
        "innodb_adaptive_hash_index": "OFF",
        "innodb_stats_persistent": "OFF",
        "innodb_stats_auto_recalc": "OFF",
        "innodb_buffer_pool_size": str(128 * 1024 * 1024),
        "max_connections": str(server.settings.max_connections),
    }
    assert {name: variables.get(name) for name in expected} == expected
    assert x_plugin in (None, "DISABLED")  # the X protocol is off


# -- across sessions ------------------------------------------------------
def test_a_later_session_reuses_the_server_and_the_template(
    server: freshdb.DatabaseServer, run_prefix: str, mysql_image: str, rich_schema: Path
) -> None:
    with freshdb.DatabaseServer(
        "mysql", image=mysql_image, mode="sticky", prefix=run_prefix, schema=rich_schema
    ) as later:
        stats = later.stats()
        assert stats["template_reused"] is True
        assert later.template == server.template
        assert later.address.port == server.address.port  # the same container
        with later.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM posts").scalar() == 3


# -- servers freshdb must refuse ----------------------------------------------------------
def _containers(docker_client: Any, prefix: str) -> list[Any]:
    return [
        c for c in docker_client.containers.list(all=True) if str(c.name).startswith(f"{prefix}-")
    ]


def _sticky_lock_is_free(engine: str, image: str, prefix: str) -> bool:
    settings = freshdb.Settings(engine=engine, image=image, prefix=prefix)  # type: ignore[arg-type]
    backend = DockerBackend(settings, MySQLDialect())
    backend.client()
    lock = naming.lock_name(backend.sticky_name(), backend._docker_url)
    path = state_directory() / "locks" / lock
    try:
        with filelock.FileLock(str(path), timeout=0):
            return True
    except filelock.Timeout:
        return False


@pytest.mark.parametrize("mode", ["throwaway", "sticky"])
def test_a_mysql_server_for_engine_mariadb_is_refused_once_it_answers(
    mode: str, mysql_image: str, docker_client: Any
) -> None:
    # By its id, the image's name says nothing: only the running server can tell.
    image = str(docker_client.images.get(mysql_image).id)
    prefix = RUN_PREFIX[:7] + secrets.token_hex(4)
    server = freshdb.DatabaseServer("mariadb", image=image, mode=mode, prefix=prefix, pool_size=0)
    with pytest.raises(freshdb.UnsupportedServerError) as raised:
        server.start()
    message = str(raised.value)
    said = f"engine 'mariadb' runs MariaDB, but the server in image {image!r} is MySQL 9."
    assert said in message
    assert "use engine='mysql'" in message
    assert "MariaDB 10.6 or newer (tested: 10.11, 11.8)" in message
    assert "MySQL 8.0 or newer" in message
    assert _containers(docker_client, prefix) == []  # removed, whatever the mode
    assert _sticky_lock_is_free("mariadb", image, prefix)
    with pytest.raises(freshdb.UnsupportedServerError):
        server.start()  # and again, the same way: nothing half-made was kept
    assert _containers(docker_client, prefix) == []


def test_a_mysql_image_for_engine_mariadb_is_refused_before_it_starts(
    mysql_image: str, docker_client: Any
) -> None:
    prefix = RUN_PREFIX[:7] + secrets.token_hex(4)
    with pytest.raises(freshdb.UnsupportedServerError, match="engine 'mariadb' runs MariaDB"):
        freshdb.DatabaseServer("mariadb", image=mysql_image, mode="sticky", prefix=prefix).start()
    assert _containers(docker_client, prefix) == []


def test_a_mysql_image_for_engine_postgres_is_refused_by_its_port(
    mysql_image: str, docker_client: Any
) -> None:
    image = str(docker_client.images.get(mysql_image).id)
    prefix = RUN_PREFIX[:7] + secrets.token_hex(4)
    with pytest.raises(freshdb.UnsupportedServerError) as raised:
        freshdb.DatabaseServer("postgres", image=image, mode="throwaway", prefix=prefix).start()
    assert "not 5432/tcp where a postgres server listens" in str(raised.value)
    assert "3306/tcp" in str(raised.value)
    assert _containers(docker_client, prefix) == []


def test_an_external_mysql_server_for_engine_mariadb_is_refused(
    server: freshdb.DatabaseServer,
) -> None:
    address = server.address
    url = f"mysql://{address.user}:{address.password}@{address.host}:{address.port}/"
    with pytest.raises(freshdb.UnsupportedServerError) as raised:
        freshdb.DatabaseServer(
            "mariadb", mode="external", url=url, prefix=server.settings.prefix
        ).start()
    message = str(raised.value)
    assert f"the server at {address.host}:{address.port} is MySQL 9." in message
    assert "point FRESHDB_URL / url= at a supported server" in message
    assert address.password not in message
    # The same server is welcome as engine="mysql".
    with freshdb.DatabaseServer(
        "mysql", mode="external", url=url, prefix=server.settings.prefix, pool_size=0
    ) as welcome:
        assert welcome.template is not None
