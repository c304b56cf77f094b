"""The template cache on real servers: export, restore instead of migrating, refusals."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import freshdb
from freshdb.migrators import CallableMigrator
from freshdb.template_cache.manifest import MANIFEST_NAME, CacheManifest, file_sha256

from ..conftest import RUN_PREFIX, ServerUnderTest

pytestmark = [pytest.mark.docker, pytest.mark.server]


class CountingSchema:
    """A schema whose every build is recorded in a file: proof of whether it ran."""

    def __init__(self, calls: Path, build: Callable[[sa.Connection], None]) -> None:
        self.calls = calls
        self.build = build
        # One key per test run: a template on no server yet, the same in every session.
        self.migrator = CallableMigrator(self._migrate, key=f"template-cache-{RUN_PREFIX}")

    def _migrate(self, connection: sa.Connection) -> None:
        with self.calls.open("a") as handle:
            handle.write("migrated\n")
        self.build(connection)

    @property
    def runs(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0


def build_postgres(connection: sa.Connection) -> None:
    connection.exec_driver_sql("CREATE SCHEMA app")
    connection.exec_driver_sql(
        "CREATE TABLE app.customer (id serial PRIMARY KEY, name text NOT NULL UNIQUE)"
    )
    connection.exec_driver_sql(
        "CREATE TABLE app.orders (id serial PRIMARY KEY, "
        "customer_id int NOT NULL REFERENCES app.customer(id), total numeric(10, 2))"
    )
    connection.exec_driver_sql("INSERT INTO app.customer (name) VALUES ('ada'), ('grace')")
    connection.exec_driver_sql("INSERT INTO app.orders (customer_id, total) VALUES (1, 9.50)")
    connection.exec_driver_sql(
        "CREATE VIEW app.big_spenders AS SELECT c.name FROM app.customer c "
        "JOIN app.orders o ON o.customer_id = c.id WHERE o.total > 5"
    )
    # What a replayed plain dump must carry through: rows whose text needs COPY's
    # escapes, function bodies with lines that start with a backslash or read like a
    # COPY, a trigger, a sequence of its own, a large object.
    connection.exec_driver_sql("CREATE TABLE app.note (id int PRIMARY KEY, body text)")
    connection.exec_driver_sql(
        "INSERT INTO app.note VALUES "
        "(1, E'tab\\there\\nnew line \\\\ backslash'), (2, E'\\\\.'), (3, NULL)"
    )
    connection.exec_driver_sql(
        "CREATE FUNCTION app.pattern() RETURNS text LANGUAGE sql AS $body$\n"
        "SELECT 'digits:\n"
        "\\d+\n"
        "\\restrict abc'::text\n"
        "$body$"
    )
    connection.exec_driver_sql(
        "CREATE FUNCTION app.shout() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n"
        "  NEW.body := upper(NEW.body);\n"
        "  RETURN NEW;\n"
        "-- COPY app.note (id, body) FROM stdin;\n"
        "END\n"
        "$body$"
    )
    connection.exec_driver_sql(
        "CREATE TRIGGER shout BEFORE INSERT ON app.note FOR EACH ROW EXECUTE FUNCTION app.shout()"
    )
    connection.exec_driver_sql("CREATE SEQUENCE app.ticket START 100")
    connection.exec_driver_sql("SELECT nextval('app.ticket'), nextval('app.ticket')")
    connection.exec_driver_sql("SELECT lo_from_bytea(424242, 'large object')")
    # A database-level setting: a dump of the database's contents does not carry it.
    connection.exec_driver_sql(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET search_path = app, public', "
        "current_database()); END $$"
    )


def build_mysql(connection: sa.Connection) -> None:
    # The database's own default character set, which a dump of its tables leaves out.
    connection.exec_driver_sql("ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    connection.exec_driver_sql(
        "CREATE TABLE customer (id int AUTO_INCREMENT PRIMARY KEY, name varchar(40) NOT NULL)"
    )
    connection.exec_driver_sql(
        "CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, customer_id int NOT NULL, "
        "total decimal(10, 2), FOREIGN KEY (customer_id) REFERENCES customer(id))"
    )
    connection.exec_driver_sql("INSERT INTO customer (name) VALUES ('ada'), ('grace')")
    connection.exec_driver_sql("INSERT INTO orders (customer_id, total) VALUES (1, 9.50)")
    connection.exec_driver_sql(
        "CREATE VIEW big_spenders AS SELECT c.name FROM customer c "
        "JOIN orders o ON o.customer_id = c.id WHERE o.total > 5"
    )
    connection.exec_driver_sql(
        "CREATE TRIGGER shout BEFORE INSERT ON customer FOR EACH ROW SET NEW.name = UPPER(NEW.name)"
    )
    connection.exec_driver_sql(
        "CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC RETURN x * 2"
    )


def start(
    engine: str, image: str, schema: CountingSchema, cache: Path, prefix: str
) -> freshdb.DatabaseServer:
    """A throwaway server of its own (a CI job's), with the cache directory."""
    return freshdb.DatabaseServer(
        engine,
        schema=schema.migrator,
        image=image,
        mode="throwaway",
        prefix=prefix,
        pool_size=1,
        template_cache=str(cache),
    )


def the_entry(cache: Path) -> Path:
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1, entries
    return entries[0]


def check_postgres_copy(server: freshdb.DatabaseServer) -> None:
    with server.database() as db, db.engine().connect() as conn:
        # Unqualified names: the database-level search_path came along.
        assert conn.exec_driver_sql("SHOW search_path").scalar() == "app, public"
        assert conn.exec_driver_sql("SELECT name FROM customer ORDER BY id").scalars().all() == [
            "ada",
            "grace",
        ]
        assert conn.exec_driver_sql("SELECT name FROM big_spenders").scalars().all() == ["ada"]
        # The sequence goes on where the migrations left it.
        conn.exec_driver_sql("INSERT INTO customer (name) VALUES ('linus')")
        assert conn.exec_driver_sql("SELECT max(id) FROM customer").scalar() == 3
        assert conn.exec_driver_sql("SELECT nextval('ticket')").scalar() == 102
        notes = conn.exec_driver_sql("SELECT body FROM note ORDER BY id").scalars().all()
        assert notes == ["tab\there\nnew line \\ backslash", "\\.", None]
        assert conn.exec_driver_sql("SELECT pattern()").scalar() == "digits:\n\\d+\n\\restrict abc"
        conn.exec_driver_sql("INSERT INTO note VALUES (4, 'quiet')")
        assert conn.exec_driver_sql("SELECT body FROM note WHERE id = 4").scalar() == "QUIET"
        large = conn.exec_driver_sql("SELECT lo_get(424242)").scalar()
        assert bytes(large) == b"large object"


def check_mysql_copy(server: freshdb.DatabaseServer) -> None:
    with server.database() as db, db.engine().connect() as conn:
        collation = conn.exec_driver_sql(
            "SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = DATABASE()"
        ).scalar()
        assert collation == "latin1_swedish_ci"
        assert conn.exec_driver_sql("SELECT name FROM big_spenders").scalars().all() == ["ada"]
        conn.exec_driver_sql("INSERT INTO customer (name) VALUES ('linus')")
        rows = conn.exec_driver_sql("SELECT name, twice(id) FROM customer ORDER BY id").all()
        assert [tuple(r) for r in rows] == [("ada", 2), ("grace", 4), ("LINUS", 6)]
        foreign_keys = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE()"
        ).scalar()
        assert foreign_keys == 1
        tables = conn.exec_driver_sql("SHOW TABLES").scalars().all()
        assert not any(str(t).startswith("_freshdb") for t in tables), tables


ENGINES = {
    "postgres": (build_postgres, check_postgres_copy),
    "mysql_family": (build_mysql, check_mysql_copy),
}


@pytest.mark.parametrize("family", ["postgres", "mysql_family"])
def test_a_new_server_restores_the_exported_template_instead_of_migrating(
    family: str,
    postgres_image: str,
    mysql_family: ServerUnderTest,
    fresh_prefix: str,
    tmp_path: Path,
) -> None:
    engine, image = (
        ("postgres", postgres_image)
        if family == "postgres"
        else (mysql_family.engine, mysql_family.image)
    )
    build, check_copy = ENGINES[family]
    schema = CountingSchema(tmp_path / "calls", build)
    cache = tmp_path / "cache"
    with start(engine, image, schema, cache, fresh_prefix + "a") as first:
        assert first.stats()["template_restored"] is False
        check_copy(first)
    assert schema.runs == 1
    entry = the_entry(cache)
    manifest = CacheManifest.from_json((entry / MANIFEST_NAME).read_text())
    assert manifest.fingerprint == entry.name
    assert first.template is not None and first.template.endswith(entry.name[:20])

    # The next CI job: a new server, the cache directory restored by the CI's cache step.
    with start(engine, image, schema, cache, fresh_prefix + "b") as second:
        assert second.stats()["template_restored"] is True
        assert second.template == first.template.replace(fresh_prefix + "a", fresh_prefix + "b")
        check_copy(second)
    assert schema.runs == 1  # the migrations never ran again


@pytest.fixture
def postgres_entry(
    postgres_image: str, fresh_prefix: str, tmp_path: Path
) -> tuple[CountingSchema, Path]:
    """A cache holding this schema's template, exported by a first server."""
    schema = CountingSchema(tmp_path / "calls", build_postgres)
    cache = tmp_path / "cache"
    with start("postgres", postgres_image, schema, cache, fresh_prefix + "a"):
        pass
    assert schema.runs == 1
    return schema, cache


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in (len(data) // 3, len(data) // 2):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def make_foreign(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST_NAME).read_text())
    manifest.update(family="mysql", server_version="mariadb 10.11", server_release="10.11.18")
    (entry / MANIFEST_NAME).write_text(json.dumps(manifest))


def make_other_major(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST_NAME).read_text())
    manifest.update(server_version="postgres 15", server_release="15.18")
    (entry / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda entry: flip_bytes(entry / "template.sql"), "sha256 (corrupt)"),
        (make_foreign, "made by mysql"),
        (make_other_major, "made by postgres 15"),
    ],
    ids=["corrupt", "other-engine", "other-major-version"],
)
def test_a_corrupt_or_foreign_entry_is_ignored_with_a_warning_and_the_migrations_run(
    spoil: Callable[[Path], None],
    reason: str,
    postgres_entry: tuple[CountingSchema, Path],
    postgres_image: str,
    fresh_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema, cache = postgres_entry
    entry = the_entry(cache)
    spoil(entry)
    spoiled = file_sha256(entry / MANIFEST_NAME), file_sha256(entry / "template.sql")
    with (
        caplog.at_level(logging.WARNING, logger="freshdb"),
        start("postgres", postgres_image, schema, cache, fresh_prefix + "b") as server,
    ):
        assert server.stats()["template_restored"] is False
        check_postgres_copy(server)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignoring the template cache entry" in w and reason in w for w in warnings), warnings
    assert schema.runs == 2  # migrated, not restored
    # The template built replaced the spoiled entry with a good one.
    manifest = CacheManifest.from_json((entry / MANIFEST_NAME).read_text())
    assert (manifest.family, manifest.server_version) == ("postgres", "postgres 17")
    assert (file_sha256(entry / MANIFEST_NAME), manifest.sha256) != spoiled
    assert file_sha256(entry / "template.sql") == manifest.sha256


def test_a_restore_that_fails_midway_is_dropped_and_the_migrations_run(
    postgres_entry: tuple[CountingSchema, Path],
    postgres_image: str,
    fresh_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dump that passes its checks but does not restore (say, a role it needs is
    missing on this server): nothing half-restored is ever sealed."""
    schema, cache = postgres_entry
    entry = the_entry(cache)
    dump = entry / "template.sql"
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])  # a truncated script
    manifest = json.loads((entry / MANIFEST_NAME).read_text())
    manifest.update(sha256=file_sha256(dump), size=dump.stat().st_size)
    (entry / MANIFEST_NAME).write_text(json.dumps(manifest))
    with (
        caplog.at_level(logging.WARNING, logger="freshdb"),
        start("postgres", postgres_image, schema, cache, fresh_prefix + "b") as server,
    ):
        assert server.stats()["template_restored"] is False
        check_postgres_copy(server)
    assert "restoring the template from the cache entry" in caplog.text
    assert "cut short" in caplog.text
    assert schema.runs == 2


def _cli_environment(prefix: str, postgres_image: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FRESHDB_") or k.endswith("_IMAGE")
    }
    env.update(FRESHDB_PREFIX=prefix, FRESHDB_POSTGRES_IMAGE=postgres_image, CI="true")
    return env


def test_warm_export_fills_the_cache_under_the_key_freshdb_fingerprint_prints(
    postgres_image: str, fresh_prefix: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for number in range(1, 6):
        (migrations / f"{number:03d}.sql").write_text(
            f"CREATE TABLE t{number} (id int PRIMARY KEY);\n"
            f"INSERT INTO t{number} VALUES ({number});\n"
        )
    cache = tmp_path / "cache"

    def freshdb_cli(*args: str, prefix: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "freshdb", *args, "--schema", str(migrations)],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
            env=_cli_environment(prefix, postgres_image),
        )
        assert result.returncode == 0, result.stderr
        return result

    key = freshdb_cli("fingerprint", prefix=fresh_prefix).stdout.strip()
    # Under CI the mode is throwaway: warm --export builds, exports, and removes the server.
    built = freshdb_cli("warm", "--export", str(cache), prefix=fresh_prefix + "a")
    assert " built " in built.stdout
    assert the_entry(cache).name == key
    assert built.stdout.split()[1].endswith(key[:20])
    restored = freshdb_cli("warm", "--export", str(cache), prefix=fresh_prefix + "b")
    assert "restored from the cache" in restored.stdout
    shutil.rmtree(cache)


def test_a_template_already_on_a_server_is_exported_from_a_copy(
    postgres_image: str, fresh_prefix: str, tmp_path: Path
) -> None:
    """A sticky server's template, built before the cache was set, is exported by the
    next session that has the cache: a sealed template takes no connections, so a copy
    of it is dumped, then dropped."""
    schema = CountingSchema(tmp_path / "calls", build_postgres)
    cache = tmp_path / "cache"
    common = {
        "schema": schema.migrator,
        "image": postgres_image,
        "prefix": fresh_prefix,
        "pool_size": 1,
        "mode": "sticky",
    }
    with freshdb.DatabaseServer("postgres", **common):
        pass
    assert schema.runs == 1 and not cache.exists()
    with freshdb.DatabaseServer("postgres", template_cache=str(cache), **common) as server:
        assert server.stats()["template_reused"] is True
        with sa.create_engine(server.url, poolclass=sa.NullPool).connect() as conn:
            names = conn.exec_driver_sql("SELECT datname FROM pg_database").scalars().all()
        assert not [n for n in names if n.startswith(f"{fresh_prefix}_b_")], names
    entry = the_entry(cache)
    assert server.template is not None and server.template.endswith(entry.name[:20])
    with start("postgres", postgres_image, schema, cache, fresh_prefix + "b") as restored:
        assert restored.stats()["template_restored"] is True
        check_postgres_copy(restored)
    assert schema.runs == 1


def test_fingerprint_asks_the_server_when_the_image_tag_does_not_tell(
    postgres_image: str, docker_client: Any, fresh_prefix: str, tmp_path: Path
) -> None:
    image_id = docker_client.images.get(postgres_image).id  # names no version at all
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE t (id int PRIMARY KEY);\n")
    result = subprocess.run(
        [sys.executable, "-m", "freshdb", "fingerprint", "--schema", str(schema)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**_cli_environment(fresh_prefix, postgres_image), "FRESHDB_POSTGRES_IMAGE": image_id},
    )
    assert result.returncode == 0, result.stderr
    assert "the server says" in result.stderr
    # The key a session on that server files its template under.
    with freshdb.DatabaseServer(
        "postgres",
        schema=schema,
        image=postgres_image,
        mode="throwaway",
        prefix=fresh_prefix + "a",
        pool_size=0,
        template_cache=str(tmp_path / "cache"),
    ) as server:
        assert server.template is not None
    assert the_entry(tmp_path / "cache").name == result.stdout.strip()
    # The throwaway server it asked is gone.
    label = f"io.freshdb.prefix={fresh_prefix}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
