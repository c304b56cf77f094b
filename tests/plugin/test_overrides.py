"""Overriding freshdb's fixtures: from a conftest, from a plugin, through the factories.

pytest prefers a conftest's fixture to any plugin's, and among plugins the one
registered last; it registers ``-p`` plugins before entry-point plugins such as
freshdb. freshdb registers its fixtures after every plugin and leaves out the names
another plugin defines, so a plugin's override wins; where a conftest hides it,
freshdb says so.
"""

from __future__ import annotations

import textwrap

import pytest

from .conftest import AdminView, server_fixture_source, server_use_source

pytest_plugins = ["pytester"]

#: A plugin (for ``-p``) whose server builds a ``plugin_users`` table.
SERVER_PLUGIN = server_fixture_source("plugin_users")


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(*args, timeout=280)


# -- which fixture wins (no server needed) -------------------------------------------------
def test_a_plugin_override_wins_and_a_conftest_hiding_it_is_reported(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        myplugin="""
        import pytest


        @pytest.fixture(scope="session")
        def freshdb_server():
            return "the plugin's"
        """
    )
    pytester.mkpydir("plain").joinpath("test_plain.py").write_text(
        textwrap.dedent(
            """
            def test_plugin_server(freshdb_server):
                assert freshdb_server == "the plugin's"
            """
        )
    )
    shadowed = pytester.mkpydir("shadowed")
    shadowed.joinpath("conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest


            @pytest.fixture(scope="session")
            def freshdb_server():
                return "the conftest's"
            """
        )
    )
    shadowed.joinpath("test_shadowed.py").write_text(
        textwrap.dedent(
            """
            def test_conftest_server(freshdb_server):
                assert freshdb_server == "the conftest's"
            """
        )
    )
    result = run(pytester, "-p", "myplugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*FixtureOverrideWarning: freshdb: the freshdb_server fixture of plugin 'myplugin' "
            f"is not used by the tests under {shadowed}: {shadowed / 'conftest.py'} defines "
            "freshdb_server too, and pytest always prefers a conftest's fixture to a plugin's.*"
        ]
    )


@pytest.mark.parametrize("how", ["PYTEST_PLUGINS", "pytest_plugins"])
def test_other_ways_of_loading_a_plugin_override_freshdb_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    pytester.makepyfile(
        myplugin="""
        import pytest


        @pytest.fixture
        def freshdb_url():
            return "the plugin's"
        """,
        test_url="""
        def test_plugin_url(freshdb_url):
            assert freshdb_url == "the plugin's"
        """,
    )
    if how == "PYTEST_PLUGINS":
        monkeypatch.setenv("PYTEST_PLUGINS", "myplugin")
    else:
        pytester.makeconftest('pytest_plugins = ["myplugin"]\n')
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_freshdb_fixtures_are_listed_with_their_documentation(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "freshdb_server [[]session scope[]] -- *fixtures.py:*",
            "*The session's started*",
        ]
    )
    for name in ("freshdb_host", "freshdb_port", "freshdb_user", "freshdb_password"):
        result.stdout.fnmatch_lines([f"{name} -- *"])


# -- a real server from each place ---------------------------------------------------------
@pytest.mark.docker
def test_a_p_plugin_gives_the_server_and_the_tests_use_it(
    inner_project: pytest.Pytester, inner_options: list[str]
) -> None:
    inner_project.makepyfile(serverplugin=SERVER_PLUGIN)
    inner_project.makepyfile(test_mine=server_use_source("plugin_users"))
    result = run(inner_project, *inner_options, "-p", "serverplugin", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["  pool main: 3 handed out, *, size 1"])


@pytest.mark.docker
def test_the_server_parts_reach_the_tests_database(
    inner_project: pytest.Pytester, inner_options: list[str], postgres_admin: AdminView
) -> None:
    inner_project.makepyfile(
        test_parts="""
        import psycopg


        def test_parts(freshdb, freshdb_server, freshdb_host, freshdb_port, freshdb_user,
                       freshdb_password):
            address = freshdb_server.address
            parts = (freshdb_host, freshdb_port, freshdb_user, freshdb_password)
            assert parts == (address.host, address.port, address.user, address.password)
            # A suite that builds its own DSN from the parts reaches the test's database.
            with psycopg.connect(
                host=freshdb_host,
                port=freshdb_port,
                user=freshdb_user,
                password=freshdb_password,
                dbname=freshdb.name,
            ) as connection:
                row = connection.execute("SELECT current_database(), count(*) FROM items")
                assert row.fetchone() == (freshdb.name, 1)
        """
    )
    result = run(inner_project, *inner_options)
    result.assert_outcomes(passed=1)
    assert postgres_admin.address.port > 0  # the same sticky server as the inner run's


@pytest.mark.docker
@pytest.mark.parametrize("where", ["conftest", "plugin"])
def test_the_factories_override_freshdb_server_from_a_conftest_or_a_plugin(
    inner_project: pytest.Pytester, inner_options: list[str], where: str
) -> None:
    (inner_project.path / "other.sql").write_text("CREATE TABLE others (name varchar(100));\n")
    factories = """
        from freshdb.pytest_plugin import database_fixture, server_fixture

        freshdb_server = server_fixture(schema="other.sql", pool_size=1)
        second_database = database_fixture("freshdb_server")
        """
    arguments: list[str] = []
    if where == "conftest":
        inner_project.makeconftest(factories)
    else:
        inner_project.makepyfile(factoryplugin=factories)
        arguments = ["-p", "factoryplugin"]
    inner_project.makepyfile(
        test_factories="""
        import sqlalchemy as sa


        def tables(database):
            return sa.inspect(database.engine()).get_table_names()


        def test_every_fixture_uses_the_factory_server(
            freshdb, second_database, freshdb_server, freshdb_port
        ):
            assert tables(freshdb) == tables(second_database) == ["others"]
            assert freshdb_server.settings.pool_size == 1
            assert freshdb_port == freshdb_server.address.port
        """
    )
    result = run(inner_project, *inner_options, *arguments)
    result.assert_outcomes(passed=1)
