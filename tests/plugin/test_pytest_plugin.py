"""The pytest plugin, end to end: real inner pytest runs against real containers.

Each test writes a small project with ``pytester`` and runs it in a subprocess with
``--freshdb-*`` options pointing at this run's sticky server (``run_prefix``), or at a
prefix of its own (``fresh_prefix``) where starting from nothing is the point.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import pytest
import sqlalchemy as sa

from freshdb import naming
from freshdb.backends.containers import list_managed_containers

from ..conftest import ENGINES, IMAGE_VARIABLES, ServerUnderTest, image_for
from .conftest import (
    RECORD,
    AdminView,
    builds,
    mysql_dialect_missing,
    records,
    server_fixture_source,
    server_use_source,
    write_tests,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.docker


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(*args, timeout=280)


def containers_with_prefix(docker_client: Any, prefix: str) -> list[str]:
    return [str(c.name) for c in list_managed_containers(docker_client, prefix)]


@pytest.mark.server
# -- a fresh database for every test ----------------------------------------------------
def test_every_test_of_a_suite_gets_a_template_fresh_database(
    inner_project: pytest.Pytester, inner_options: list[str], postgres_admin: AdminView
) -> None:
    write_tests(
        inner_project,
        "test_fifty",
        """
        import pytest
        from sqlalchemy import text


        @pytest.mark.parametrize("n", range(50))
        def test_fresh(freshdb, freshdb_connection, freshdb_engine, freshdb_server, n):
            names = freshdb_connection.execute(text("SELECT name FROM items")).scalars()
            assert list(names) == ["seed"]
            freshdb_connection.execute(
                text("INSERT INTO items (name) VALUES (:name)"), {"name": f"test {n}"}
            )
            freshdb_connection.commit()
            with freshdb_engine.connect() as other:  # the write is really there
                count = other.execute(text("SELECT count(*) FROM items")).scalar_one()
                assert count == 2
            record(f"{n:02d}", freshdb.name, freshdb_server.template)
        """,
    )
    result = run(inner_project, *inner_options, "-v")
    result.assert_outcomes(passed=50)
    seen = [value.split() for value in records(inner_project).values()]
    assert len({name for name, _ in seen}) == 50, "a database was handed out twice"
    (template,) = {template for _, template in seen}
    assert len(builds(inner_project)) == 1
    result.stdout.fnmatch_lines(
        [
            "freshdb: postgres, sticky container, image *, prefix *",
            "*= freshdb =*",
            "postgres sticky server * image *",
            "  url: *postgresql+psycopg://postgres:***@*",
            f"  template: {template} (built in *",
            "  pool main: 50 handed out, * waits *",
        ]
    )
    assert postgres_admin.address.password not in result.stdout.str()
    assert postgres_admin.of_template(template, "copy") == []


@pytest.mark.server
@pytest.mark.parametrize("workers", [2, 4])
def test_xdist_workers_share_one_server_and_template_and_leave_no_copy(
    inner_project: pytest.Pytester,
    inner_options: list[str],
    postgres_admin: AdminView,
    workers: int,
) -> None:
    write_tests(
        inner_project,
        "test_parallel",
        """
        import pytest
        from sqlalchemy import text


        @pytest.mark.parametrize("n", range(24))
        def test_parallel(freshdb, freshdb_connection, freshdb_server, n):
            count = freshdb_connection.execute(text("SELECT count(*) FROM items"))
            assert count.scalar_one() == 1
            freshdb_connection.execute(text("INSERT INTO items (name) VALUES ('x')"))
            freshdb_connection.commit()
            record(
                f"{n:02d}", WORKER, freshdb.name, freshdb_server.template,
                freshdb_server.url.port,
            )
        """,
    )
    result = run(inner_project, *inner_options, "-n", str(workers))
    result.assert_outcomes(passed=24)
    assert len(builds(inner_project)) == 1, "the template was built more than once"
    seen = [value.split() for value in records(inner_project).values()]
    assert len({name for _, name, _, _ in seen}) == 24, "a database was handed out twice"
    assert len({(template, port) for _, _, template, port in seen}) == 1
    # Each worker is one owner (its own pool); no two workers share an owner.
    owners: dict[str, set[str]] = {}
    for worker, name, _, _ in seen:
        parsed = naming.parse_database_name(postgres_admin.prefix, name)
        assert parsed is not None and parsed.owner is not None
        owners.setdefault(worker, set()).add(parsed.owner)
    assert all(len(of_worker) == 1 for of_worker in owners.values())
    assert len(set.union(*owners.values())) == len(owners)
    template = seen[0][2]
    result.stdout.fnmatch_lines([f"  template: {template} (built in *"])
    assert postgres_admin.of_template(template, "copy") == []
    assert postgres_admin.of_template(template, "build") == []


def test_xdist_throwaway_server_is_started_once_and_removed_at_the_end(
    inner_project: pytest.Pytester,
    postgres_image: str,
    fresh_prefix: str,
    docker_client: Any,
) -> None:
    write_tests(
        inner_project,
        "test_throwaway",
        """
        import pytest

        from freshdb.backends.containers import list_managed_containers
        from freshdb.backends.docker_discovery import connect_docker


        @pytest.mark.parametrize("n", range(8))
        def test_shared(freshdb, freshdb_server, n):
            client, _ = connect_docker()
            prefix = freshdb_server.settings.prefix
            modes = sorted(
                c.labels["io.freshdb.mode"] for c in list_managed_containers(client, prefix)
            )
            record(n, WORKER, freshdb.url.port, ",".join(modes))
        """,
    )
    result = run(
        inner_project,
        f"--freshdb-image={postgres_image}",
        "--freshdb-mode=throwaway",
        f"--freshdb-prefix={fresh_prefix}",
        "-n",
        "2",
    )
    result.assert_outcomes(passed=8)
    seen = [value.split() for value in records(inner_project).values()]
    assert {(port, modes) for _, port, modes in seen} == {(seen[0][1], "throwaway")}
    result.stdout.fnmatch_lines(["postgres throwaway (one for all xdist workers) server *"])
    assert containers_with_prefix(docker_client, fresh_prefix) == []


# -- inert unless asked -------------------------------------------------------------
@pytest.mark.parametrize(
    "extra", [["--freshdb-mode=sticky"], ["--freshdb-mode=throwaway", "-n", "2"]]
)
def test_a_suite_without_freshdb_fixtures_starts_nothing(
    pytester: pytest.Pytester,
    postgres_image: str,
    fresh_prefix: str,
    docker_client: Any,
    extra: list[str],
) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        import pytest


        @pytest.mark.parametrize("n", range(5))
        def test_plain(n):
            assert n < 5


        def test_freshdb_never_touched_docker():
            assert "freshdb.backends.docker" not in sys.modules
            assert "docker" not in sys.modules
        """
    )
    result = run(
        pytester,
        f"--freshdb-image={postgres_image}",
        f"--freshdb-prefix={fresh_prefix}",
        "-p",
        "no:cacheprovider",
        *extra,
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["freshdb: postgres, * container, image *"])
    result.stdout.no_fnmatch_line("*= freshdb =*")
    assert containers_with_prefix(docker_client, fresh_prefix) == []


# -- failures ---------------------------------------------------------------------------
def test_keep_failed_keeps_exactly_the_failed_tests_databases(
    inner_project: pytest.Pytester, inner_options: list[str], postgres_admin: AdminView
) -> None:
    inner_project.makepyfile(
        test_some_fail="""
        import pytest
        from sqlalchemy import text


        @pytest.mark.parametrize("n", range(4))
        def test_maybe_fails(freshdb_connection, n):
            freshdb_connection.execute(
                text("INSERT INTO items (name) VALUES (:name)"), {"name": f"written by {n}"}
            )
            freshdb_connection.commit()
            assert n % 2 == 0, "odd tests fail on purpose"
        """
    )
    result = run(inner_project, *inner_options, "--freshdb-keep-failed")
    result.assert_outcomes(passed=2, failed=2)
    output = result.stdout.str()
    kept = re.findall(r"freshdb kept this test's database as (\S+)", output)
    assert len(kept) == 2
    for name in kept:
        assert re.search(rf"url: +postgresql\+psycopg://postgres:\*\*\*@\S+/{name}\b", output)
    assert postgres_admin.address.password not in output
    result.stdout.fnmatch_lines(["kept 2 database(s) of failed tests:"])

    parsed = [naming.parse_database_name(postgres_admin.prefix, name) for name in kept]
    fingerprints = {p.fingerprint for p in parsed if p is not None}
    on_server = sorted(
        p.name
        for p in postgres_admin.databases()
        if p.kind == "kept" and p.fingerprint in fingerprints
    )
    try:
        assert on_server == sorted(kept)
        contents = set()
        for name in kept:
            # The printed hint is a command that really finds the database.
            hint = re.search(rf"connect: (freshdb url --database {name}[^(\n]*)", output)
            assert hint is not None, output
            url = cli_output(hint.group(1).split()[1:])
            assert "***" not in url
            engine = sa.create_engine(url, poolclass=sa.NullPool)
            with engine.connect() as conn:
                names = conn.execute(sa.text("SELECT name FROM items ORDER BY name")).scalars()
                contents.add(tuple(names))
            engine.dispose()
        assert contents == {("seed", "written by 1"), ("seed", "written by 3")}
    finally:
        for name in on_server:
            postgres_admin.drop(name)
    copies = [p for p in postgres_admin.databases() if p.fingerprint in fingerprints]
    assert copies == []


def cli_output(arguments: list[str]) -> str:
    """What ``freshdb ARGUMENTS`` prints, run from the same shell (environment) as pytest."""
    done = subprocess.run(
        [sys.executable, "-m", "freshdb", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.server
# -- async ------------------------------------------------------------------------------
def test_async_engine_works_under_pytest_asyncio_and_anyio(
    inner_project: pytest.Pytester, inner_options: list[str]
) -> None:
    inner_project.makepyfile(
        test_async="""
        import pytest
        from sqlalchemy import text


        async def write_and_count(engine):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO items (name) VALUES ('async')"))
            async with engine.connect() as conn:
                return (await conn.execute(text("SELECT count(*) FROM items"))).scalar_one()


        @pytest.fixture
        def anyio_backend():
            return "asyncio"


        @pytest.mark.parametrize("n", range(3))
        @pytest.mark.asyncio
        async def test_with_pytest_asyncio(freshdb_async_engine, n):
            assert await write_and_count(freshdb_async_engine) == 2


        @pytest.mark.parametrize("n", range(3))
        @pytest.mark.anyio
        async def test_with_anyio(freshdb_async_engine, n):
            assert await write_and_count(freshdb_async_engine) == 2
        """
    )
    result = run(inner_project, *inner_options, "-W", "always::ResourceWarning")
    result.assert_outcomes(passed=6)
    # No connection outlives its event loop (psycopg warns when one is garbage collected).
    assert "was deleted while still open" not in result.stdout.str() + result.stderr.str()


# -- savepoint mode ---------------------------------------------------------------------
@pytest.mark.server
@pytest.mark.compat
@pytest.mark.parametrize("engine", ENGINES)
def test_savepoint_mode_leaves_nothing_behind_for_the_next_test(
    inner_project: pytest.Pytester,
    run_prefix: str,
    engine: str,
) -> None:
    if engine != "postgres" and (reason := mysql_dialect_missing()):
        pytest.skip(reason)
    inner_project.makepyfile(
        models="""
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


        class Base(DeclarativeBase):
            pass


        class Item(Base):
            __tablename__ = "saved_items"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(100))
        """,
        test_savepoints=RECORD
        + textwrap.dedent(
            """
            from sqlalchemy import func, insert, select, text

            from models import Item

            COUNT = select(func.count()).select_from(Item)


            def database_of(connection):
                if connection.dialect.name == "postgresql":
                    return connection.execute(text("SELECT current_database()")).scalar_one()
                return connection.execute(text("SELECT DATABASE()")).scalar_one()


            def test_1_code_under_test_commits(freshdb_session):
                freshdb_session.add(Item(name="committed"))
                freshdb_session.commit()
                assert freshdb_session.scalar(COUNT) == 1
                record(1, database_of(freshdb_session.connection()))


            def test_2_sees_nothing(freshdb_session):
                assert freshdb_session.scalar(COUNT) == 0
                record(2, database_of(freshdb_session.connection()))


            def test_3_writes_through_the_connection(freshdb_transaction):
                freshdb_transaction.execute(insert(Item).values(name="written"))
                assert freshdb_transaction.execute(COUNT).scalar_one() == 1
                record(3, database_of(freshdb_transaction))


            def test_4_sees_nothing(freshdb_transaction):
                assert freshdb_transaction.execute(COUNT).scalar_one() == 0
                record(4, database_of(freshdb_transaction))


            def test_5_commits_the_outer_transaction(freshdb_transaction):
                freshdb_transaction.execute(insert(Item).values(name="escaped"))
                record(5, database_of(freshdb_transaction))
                freshdb_transaction.commit()


            def test_6_still_sees_nothing(freshdb_transaction):
                assert freshdb_transaction.execute(COUNT).scalar_one() == 0
                record(6, database_of(freshdb_transaction))
            """
        ),
    )
    image = image_for(engine)
    result = run(
        inner_project,
        f"--freshdb-engine={engine}",
        f"--freshdb-image={image}",
        "--freshdb-mode=sticky",
        f"--freshdb-prefix={run_prefix}",
        "--freshdb-schema=models:Base.metadata",
        "-p",
        "no:randomly",
    )
    # Test 5 committed the outer transaction: it fails (at teardown), the rest pass.
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_5_commits_the_outer_transaction*"])
    databases = records(inner_project)
    # One copy per worker for tests 1-5; the escaped commit got the worker a new one.
    assert len({databases[str(n)] for n in range(1, 6)}) == 1
    assert databases["6"] != databases["1"]


LEAKS = {
    "postgres COMMIT": ("postgres", 'freshdb_transaction.exec_driver_sql("COMMIT")'),
    "mariadb COMMIT": ("mariadb", 'freshdb_transaction.exec_driver_sql("COMMIT")'),
    "mariadb DDL": (
        "mariadb",
        'freshdb_transaction.exec_driver_sql("CREATE TABLE made_by_a_test (x int)")',
    ),
}


@pytest.mark.parametrize("leak", list(LEAKS))
def test_savepoint_mode_fails_a_test_that_commits_and_later_tests_see_no_leak(
    inner_project: pytest.Pytester,
    run_prefix: str,
    postgres_image: str,
    mariadb_image: str,
    leak: str,
) -> None:
    engine, statement = LEAKS[leak]
    if engine == "mariadb" and (reason := mysql_dialect_missing()):
        pytest.skip(reason)
    inner_project.makepyfile(
        test_leaks=RECORD
        + textwrap.dedent(
            f"""
            from sqlalchemy import inspect, text

            COUNT = text("SELECT count(*) FROM items")
            WRITE = text("INSERT INTO items (name) VALUES ('leaked?')")


            def database_of(connection):
                if connection.dialect.name == "postgresql":
                    return connection.execute(text("SELECT current_database()")).scalar_one()
                return connection.execute(text("SELECT DATABASE()")).scalar_one()


            def test_1_commits_inside_savepoint_mode(freshdb_transaction):
                record(1, database_of(freshdb_transaction))
                freshdb_transaction.execute(WRITE)
                {statement}
                freshdb_transaction.execute(WRITE)
                assert freshdb_transaction.execute(COUNT).scalar_one() == 3


            def test_2_sees_only_the_template(freshdb_transaction):
                record(2, database_of(freshdb_transaction))
                assert freshdb_transaction.execute(COUNT).scalar_one() == 1
                assert "made_by_a_test" not in inspect(freshdb_transaction).get_table_names()
                freshdb_transaction.execute(WRITE)


            def test_3_session_commits_stay_inside(freshdb_session):
                record(3, database_of(freshdb_session.connection()))
                assert freshdb_session.execute(COUNT).scalar_one() == 1
                freshdb_session.execute(WRITE)
                freshdb_session.commit()


            def test_4_still_sees_only_the_template(freshdb_transaction):
                record(4, database_of(freshdb_transaction))
                assert freshdb_transaction.execute(COUNT).scalar_one() == 1
            """
        ),
    )
    image = postgres_image if engine == "postgres" else mariadb_image
    result = run(
        inner_project,
        f"--freshdb-engine={engine}",
        f"--freshdb-image={image}",
        "--freshdb-mode=sticky",
        f"--freshdb-prefix={run_prefix}",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_1_commits_inside_savepoint_mode*",
            "*this test ended the transaction it runs in*Use the `freshdb` fixture*",
        ]
    )
    databases = records(inner_project)
    # The leaking test's copy was replaced; tests 2-4 share the new one (a commit
    # through freshdb_session stays inside the test and replaces nothing).
    assert databases["2"] != databases["1"]
    assert databases["2"] == databases["3"] == databases["4"]


# -- other servers ----------------------------------------------------------------------
def test_factory_fixtures_and_markers_pick_other_servers(
    inner_project: pytest.Pytester, inner_options: list[str]
) -> None:
    (inner_project.path / "other.sql").write_text("CREATE TABLE others (name varchar(100));\n")
    inner_project.makeconftest(
        """
        from freshdb.pytest_plugin import database_fixture, server_fixture

        other_server = server_fixture(schema="other.sql")
        other_database = database_fixture("other_server")
        """
    )
    inner_project.makepyfile(
        test_servers="""
        import pytest
        import sqlalchemy as sa

        from freshdb import naming


        def tables(database):
            return sorted(sa.inspect(database.engine()).get_table_names())


        def test_default_server(freshdb):
            assert tables(freshdb) == ["items"]


        def test_factory_server(other_database, other_server, freshdb_server):
            assert tables(other_database) == ["others"]
            assert other_server is not freshdb_server
            assert other_server.template != freshdb_server.template


        @pytest.mark.freshdb(schema="other.sql")
        def test_marker_server(freshdb, other_server):
            assert tables(freshdb) == ["others"]
            prefix = other_server.settings.prefix
            copy = naming.parse_database_name(prefix, freshdb.name)
            template = naming.parse_database_name(prefix, other_server.template)
            assert template.fingerprint.startswith(copy.fingerprint)
        """
    )
    result = run(inner_project, *inner_options)
    result.assert_outcomes(passed=3)


def test_overriding_freshdb_server_in_a_conftest_gives_full_control(
    inner_project: pytest.Pytester, inner_options: list[str]
) -> None:
    inner_project.makeconftest(server_fixture_source("users"))
    inner_project.makepyfile(test_mine=server_use_source("users"))
    result = run(inner_project, *inner_options, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["  template: *", "  pool main: 3 handed out, *, size 1"])


@pytest.mark.server
def test_a_marker_can_pick_another_engine(
    inner_project: pytest.Pytester,
    inner_options: list[str],
    mysql_family: ServerUnderTest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if reason := mysql_dialect_missing():
        pytest.skip(reason)
    # The run's --freshdb-image is a Postgres image: a MySQL-family server takes its own.
    monkeypatch.setenv(IMAGE_VARIABLES[mysql_family.engine], mysql_family.image)
    inner_project.makepyfile(
        test_engines=f"""
        import pytest
        from sqlalchemy import text


        def test_postgres(freshdb_connection):
            assert freshdb_connection.dialect.name == "postgresql"


        @pytest.mark.freshdb(engine="{mysql_family.engine}")
        def test_mysql_family(freshdb_connection):
            assert freshdb_connection.dialect.name in ("mysql", "mariadb")
            names = freshdb_connection.execute(text("SELECT name FROM items")).scalars()
            assert list(names) == ["seed"]
        """
    )
    result = run(inner_project, *inner_options)
    result.assert_outcomes(passed=2)


# -- configuration ----------------------------------------------------------------------
def test_configuration_precedence_in_a_real_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.startswith("FRESHDB_") or variable == "CI":
            monkeypatch.delenv(variable)
    monkeypatch.setenv("FRESHDB_IMAGE", "env-image")
    monkeypatch.setenv("FRESHDB_POOL_SIZE", "5")
    monkeypatch.setenv("FRESHDB_PREFIX", "fromenv")
    pytester.makepyprojecttoml(
        """
        [tool.freshdb]
        image = "pyproject-image"
        pool_size = 4
        prefix = "frompyproject"
        mode = "throwaway"

        [tool.pytest.ini_options]
        freshdb_image = "ini-image"
        freshdb_pool_size = "6"
        """
    )
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = run(pytester, "--freshdb-image=cli-image", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # CLI > ini > env > pyproject: image from the CLI, pool size from the ini file,
    # prefix from the environment, mode from pyproject.toml.
    result.stdout.fnmatch_lines(
        [
            "freshdb: postgres, throwaway container, image cli-image, prefix fromenv, "
            "pool 6 per worker *"
        ]
    )


# -- what the terminal shows while a template builds --------------------------------------
@pytest.mark.server
def test_a_long_template_build_shows_its_progress_in_pytests_output(
    inner_project: pytest.Pytester, inner_options: list[str]
) -> None:
    # A directory of slow SQL migrations (a token makes this test's template its own).
    token = secrets.token_hex(6)
    migrations = inner_project.path / "migrations"
    migrations.mkdir()
    (migrations / "001_items.sql").write_text(
        f"CREATE TABLE items (name varchar(100)); -- {token}\nSELECT pg_sleep(0.7);\n"
    )
    (migrations / "002_slow.sql").write_text("SELECT pg_sleep(0.7);\n")
    (migrations / "003_seed.sql").write_text("INSERT INTO items VALUES ('seed');\n")
    inner_project.makepyfile(
        test_progress="""
        from sqlalchemy import text


        def test_seeded(freshdb_connection):
            assert freshdb_connection.execute(text("SELECT name FROM items")).scalar() == "seed"
        """
    )
    options = [*inner_options, "-o", f"freshdb_schema={migrations}"]
    built = run(inner_project, *options)
    built.assert_outcomes(passed=1)
    # Output capturing is on (no -s): the lines are written past it, on the terminal.
    built.stdout.fnmatch_lines(
        [
            "*freshdb: building template *: 1/3 001_items.sql (0.0 s)",
            "freshdb: building template *: 3/3 003_seed.sql (*.* s)",
        ]
    )
    reused = run(inner_project, *options)
    reused.assert_outcomes(passed=1)
    reused.stdout.fnmatch_lines(["*freshdb: template * reused (*"])
    assert "building template" not in reused.stdout.str()
