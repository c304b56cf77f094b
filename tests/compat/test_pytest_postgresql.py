"""freshdb.compat.pytest_postgresql, end to end: inner pytest runs on real servers.

Each test writes a small suite shaped like a pytest-postgresql one and runs it in
a subprocess against this run's sticky Postgres server (``run_prefix``).
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import freshdb

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.docker

SCHEMA = """
CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE books (
    id serial PRIMARY KEY,
    author_id integer NOT NULL REFERENCES authors (id),
    title text NOT NULL
);
"""


@pytest.fixture(scope="session")
def running_server(run_prefix: str, postgres_image: str) -> Iterator[freshdb.DatabaseServer]:
    """This run's sticky Postgres server, as a server that runs already (for noproc)."""
    server = freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=run_prefix, pool_size=0
    )
    with server:
        yield server


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner project: a schema, and loaders that log each call to builds.log.

    A random token in the loaders' module gives every test templates of its own.
    """
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makepyfile(
        loaders=textwrap.dedent(
            f"""
            from pathlib import Path

            import psycopg

            TOKEN = {secrets.token_hex(6)!r}
            LOG = Path(__file__).parent / "builds.log"


            def log(name, parts):
                with LOG.open("a") as handle:
                    handle.write(name + " " + ",".join(sorted(parts)) + "\\n")


            def logged_execute(name, parts, statement):
                log(name, parts)
                with psycopg.connect(**parts) as connection:
                    connection.execute(statement)


            def seed(**parts):
                logged_execute(
                    "seed",
                    parts,
                    "INSERT INTO authors (name)"
                    " VALUES ('Octavia E. Butler'), ('Ursula K. Le Guin')",
                )
            """
        )
    )
    return pytester


def run(project: pytest.Pytester, options: list[str]) -> pytest.RunResult:
    return project.runpytest_subprocess(*options, timeout=280)


def builds(project: pytest.Pytester) -> list[str]:
    log = project.path / "builds.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.server
def test_the_default_fixtures_loaded_as_a_plugin(
    project: pytest.Pytester, inner_options: list[str]
) -> None:
    project.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfreshdb_schema = schema.sql\n"
    )
    project.makeconftest('pytest_plugins = ["freshdb.compat.pytest_postgresql"]')
    project.makepyfile(
        test_defaults=textwrap.dedent(
            """
            import psycopg
            import pytest

            from freshdb import DatabaseServer


            @pytest.mark.parametrize("n", range(3))
            def test_a_fresh_copy_each_time(postgresql, n):
                assert isinstance(postgresql, psycopg.Connection)
                assert postgresql.execute("SELECT count(*) FROM authors").fetchone() == (0,)
                postgresql.execute("INSERT INTO authors (name) VALUES ('x')")
                postgresql.commit()


            def test_the_process_fixture_names_the_tests_copy(postgresql_proc, postgresql):
                info = postgresql.info
                assert (postgresql_proc.host, postgresql_proc.port) == (info.host, info.port)
                assert postgresql_proc.user == info.user
                assert postgresql_proc.password == info.password
                assert postgresql_proc.dbname == info.dbname
                assert postgresql_proc.template_dbname != info.dbname
                assert postgresql_proc.template_dbname == postgresql_proc.server.template
                assert isinstance(postgresql_proc.server, DatabaseServer)
                assert "password" not in repr(postgresql_proc)


            def test_without_a_connection_dbname_is_the_template(postgresql_proc):
                assert postgresql_proc.dbname == postgresql_proc.template_dbname


            def test_noproc_is_freshdbs_configured_server(postgresql_noproc, postgresql_proc):
                assert postgresql_noproc.server.url == postgresql_proc.server.url


            @pytest.mark.asyncio
            async def test_the_async_fixture(postgresql_async):
                cursor = await postgresql_async.execute("SELECT count(*) FROM books")
                assert await cursor.fetchone() == (0,)
            """
        )
    )
    result = run(project, inner_options)
    result.assert_outcomes(passed=7)


@pytest.mark.server
def test_load_builds_the_template_once_across_sessions(
    project: pytest.Pytester, inner_options: list[str]
) -> None:
    project.makeconftest(
        textwrap.dedent(
            """
            from pathlib import Path

            from freshdb.compat.pytest_postgresql import factories
            from loaders import logged_execute


            def add_books(**parts):
                logged_execute(
                    "add_books",
                    parts,
                    "INSERT INTO books (author_id, title) SELECT id, 'Kindred' FROM authors"
                    " WHERE name = 'Octavia E. Butler'",
                )


            postgresql_proc = factories.postgresql_proc(
                load=[Path(__file__).parent / "schema.sql", "loaders:seed", add_books],
                pool_size=1,
            )
            postgresql = factories.postgresql("postgresql_proc")
            """
        )
    )
    project.makepyfile(
        test_loaded=textwrap.dedent(
            """
            import pytest


            @pytest.mark.parametrize("n", range(2))
            def test_loaded_rows(postgresql, n):
                titles = postgresql.execute(
                    "SELECT a.name, b.title FROM books b JOIN authors a ON a.id = b.author_id"
                ).fetchall()
                assert titles == [("Octavia E. Butler", "Kindred")]
                postgresql.execute("DELETE FROM books")
                postgresql.commit()
            """
        )
    )
    parts = "dbname,host,password,port,user"
    result = run(project, inner_options)
    result.assert_outcomes(passed=2)
    assert builds(project) == [f"seed {parts}", f"add_books {parts}"]

    # A second session: the template is found by its fingerprint, nothing loads.
    result = run(project, inner_options)
    result.assert_outcomes(passed=2)
    assert len(builds(project)) == 2

    # Editing a loader's module makes another template.
    loaders = project.path / "loaders.py"
    loaders.write_text(loaders.read_text() + "\n# edited\n")
    result = run(project, inner_options)
    result.assert_outcomes(passed=2)
    assert builds(project)[2:] == [f"seed {parts}", f"add_books {parts}"]


@pytest.mark.server
def test_noproc_uses_a_running_server_and_layers_templates(
    project: pytest.Pytester, inner_options: list[str], running_server: freshdb.DatabaseServer
) -> None:
    address = running_server.address
    project.makeconftest(
        textwrap.dedent(
            f"""
            from pathlib import Path

            import psycopg

            from freshdb.compat.pytest_postgresql import factories

            base = factories.postgresql_noproc(
                host={address.host!r},
                port={address.port},
                user={address.user!r},
                password={address.password!r},
                options="-c statement_timeout=4321",
                load=[Path(__file__).parent / "schema.sql"],
            )
            seeded = factories.postgresql_noproc(depends_on="base", load=["loaders:seed"])
            base_db = factories.postgresql("base")
            seeded_db = factories.postgresql(
                "seeded", isolation_level=psycopg.IsolationLevel.SERIALIZABLE
            )
            """
        )
    )
    project.makepyfile(
        test_layers=textwrap.dedent(
            f"""
            import psycopg


            def test_the_base_layer_has_the_schema_only(base, base_db):
                assert base_db.execute("SELECT count(*) FROM authors").fetchone() == (0,)
                assert base_db.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
                assert base.server.settings.mode == "external"
                assert (base.host, base.port) == ({address.host!r}, {address.port})


            def test_the_seeded_layer_adds_the_rows(seeded, seeded_db):
                assert seeded_db.execute("SELECT count(*) FROM authors").fetchone() == (2,)
                assert seeded_db.isolation_level == psycopg.IsolationLevel.SERIALIZABLE
                assert seeded.server.settings.mode == "external"


            def test_layers_have_templates_of_their_own(base, seeded):
                assert base.template_dbname != seeded.template_dbname
            """
        )
    )
    result = run(project, inner_options)
    result.assert_outcomes(passed=3)
    assert [line.split()[0] for line in builds(project)] == ["seed"]


@pytest.mark.server
def test_a_suite_moves_by_changing_its_import(
    project: pytest.Pytester, inner_options: list[str], tmp_path: Path
) -> None:
    """The conftest of a pytest-postgresql suite, only the import changed, on two workers."""
    project.makeconftest(
        textwrap.dedent(
            """
            from pathlib import Path

            from freshdb.compat.pytest_postgresql import factories

            postgresql_my_proc = factories.postgresql_proc(
                port=None, load=[Path(__file__).parent / "schema.sql", "loaders.seed"]
            )
            postgresql_my = factories.postgresql("postgresql_my_proc")
            """
        )
    )
    project.makepyfile(
        test_moved=textwrap.dedent(
            """
            import pytest


            @pytest.mark.parametrize("n", range(6))
            def test_each_worker_each_test_fresh(postgresql_my, n):
                rows = postgresql_my.execute("SELECT count(*) FROM authors").fetchone()
                assert rows == (2,)
                postgresql_my.execute("DELETE FROM authors")
                postgresql_my.commit()
            """
        )
    )
    result = run(project, [*inner_options, "-n", "2"])
    result.assert_outcomes(passed=6)
    assert len(builds(project)) == 1  # one template for both workers


@pytest.mark.server
def test_pytest_postgresqls_load_options_fill_the_default_template(
    project: pytest.Pytester, inner_options: list[str]
) -> None:
    project.makeini(
        textwrap.dedent(
            """
            [pytest]
            asyncio_default_fixture_loop_scope = function
            postgresql_load =
                schema.sql
                loaders:seed
            """
        )
    )
    project.makeconftest('pytest_plugins = ["freshdb.compat.pytest_postgresql"]')
    project.makepyfile(
        test_configured=textwrap.dedent(
            """
            def test_loaded_from_the_ini_file(postgresql):
                assert postgresql.execute("SELECT count(*) FROM authors").fetchone() == (2,)
            """
        )
    )
    result = run(project, inner_options)
    result.assert_outcomes(passed=1)
    assert [line.split()[0] for line in builds(project)] == ["seed"]

    # The command line wins over the ini file, as in pytest-postgresql.
    (project.path / "other.sql").write_text(SCHEMA + "INSERT INTO authors (name) VALUES ('x');")
    project.makepyfile(
        test_configured=textwrap.dedent(
            """
            def test_loaded_from_the_command_line(postgresql):
                assert postgresql.execute("SELECT name FROM authors").fetchall() == [("x",)]
            """
        )
    )
    result = run(project, [*inner_options, "--postgresql-load=other.sql"])
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_beside_pytest_postgresql_says_what_to_do(
    project: pytest.Pytester,
) -> None:
    # A stand-in registered under pytest-postgresql's plugin name, with its options.
    project.makepyfile(
        pytest_postgresql=textwrap.dedent(
            """
            def pytest_addoption(parser):
                parser.addoption("--postgresql-load", action="append", dest="postgresql_load")
                parser.addini("postgresql_load", "", type="pathlist")
            """
        )
    )
    project.makeconftest('pytest_plugins = ["freshdb.compat.pytest_postgresql"]')
    project.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = project.runpytest_subprocess("-p", "pytest_postgresql", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*uninstall pytest-postgresql*-p no:pytest_postgresql*"])


@pytest.mark.server
def test_async_connections_to_fresh_copies(
    project: pytest.Pytester, inner_options: list[str]
) -> None:
    project.makeconftest(
        textwrap.dedent(
            """
            from pathlib import Path

            import psycopg

            from freshdb.compat.pytest_postgresql import factories

            postgresql_proc = factories.postgresql_proc(
                load=[Path(__file__).parent / "schema.sql", "loaders:seed"]
            )
            postgresql_async = factories.postgresql_async("postgresql_proc")
            serializable = factories.postgresql_async(
                "postgresql_proc", isolation_level=psycopg.IsolationLevel.SERIALIZABLE
            )
            """
        )
    )
    project.makepyfile(
        test_async=textwrap.dedent(
            """
            import psycopg
            import pytest


            @pytest.mark.asyncio
            @pytest.mark.parametrize("n", range(2))
            async def test_a_fresh_copy(postgresql_async, postgresql_proc, n):
                assert isinstance(postgresql_async, psycopg.AsyncConnection)
                assert postgresql_proc.dbname == postgresql_async.info.dbname
                cursor = await postgresql_async.execute("SELECT count(*) FROM authors")
                assert await cursor.fetchone() == (2,)
                await postgresql_async.execute("DELETE FROM authors")
                await postgresql_async.commit()


            @pytest.mark.asyncio
            async def test_the_isolation_level(serializable):
                assert serializable.isolation_level == psycopg.IsolationLevel.SERIALIZABLE
            """
        )
    )
    result = run(project, inner_options)
    result.assert_outcomes(passed=3)
