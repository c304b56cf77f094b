"""Fixtures for the plugin's tests: inner pytest runs against this run's servers.

``pytest_plugins = ["pytester"]`` lives in the test module, not here: pytest refuses
``pytest_plugins`` in a conftest below the top level when the whole suite runs.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator

import pytest

import freshdb
from freshdb import naming
from freshdb.dialects.base import ServerAddress


class AdminView:
    """Looks at a server the way a user would: through its admin URL."""

    def __init__(self, server: freshdb.DatabaseServer) -> None:
        self.server = server
        self.prefix = server.settings.prefix

    @property
    def address(self) -> ServerAddress:
        """The server's admin address."""
        return self.server.address

    def databases(self) -> list[naming.ParsedName]:
        """Every database of this prefix, parsed."""
        conn = self.server.dialect.connect(self.address)
        try:
            names = self.server.dialect.list_databases(conn, self.prefix)
        finally:
            conn.close()
        return [p for n in names if (p := naming.parse_database_name(self.prefix, n))]

    def of_template(self, template: str, kind: naming.DatabaseKind) -> list[str]:
        """Databases of one kind made from ``template`` (named by its fingerprint)."""
        fingerprint = naming.parse_database_name(self.prefix, template)
        assert fingerprint is not None, template
        return sorted(
            p.name
            for p in self.databases()
            if p.kind == kind and fingerprint.fingerprint.startswith(p.fingerprint)
        )

    def drop(self, name: str) -> None:
        """Drop a database this test made (kept copies)."""
        conn = self.server.dialect.connect(self.address)
        try:
            self.server.dialect.drop_database(conn, name)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def postgres_admin(run_prefix: str, postgres_image: str) -> Iterator[AdminView]:
    """The run's sticky Postgres server (the one inner runs reuse), seen as its admin.

    A session fixture: started before the first inner run, so its start never reaps
    what an inner run left behind (which is what the tests look for).
    """
    server = freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=run_prefix, pool_size=0
    )
    with server:
        yield AdminView(server)


@pytest.fixture
def inner_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner project with an ini file and a schema whose builds are counted.

    ``schema_mod:build`` creates ``items`` with one seed row and appends a line to
    ``builds.log``; a random token in its body gives every test a template of its own.
    """
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        freshdb_schema = schema_mod:build
        """
    )
    token = secrets.token_hex(6)
    pytester.makepyfile(
        schema_mod=textwrap.dedent(
            f"""
            from pathlib import Path

            from sqlalchemy import text


            def build(connection):
                token = "{token}"
                with open(Path(__file__).parent / "builds.log", "a") as log:
                    log.write(token + "\\n")
                connection.execute(text("CREATE TABLE items (name varchar(100) NOT NULL)"))
                connection.execute(text("INSERT INTO items (name) VALUES ('seed')"))
            """
        )
    )
    (pytester.path / "out").mkdir()
    return pytester


def builds(project: pytest.Pytester) -> list[str]:
    """The template builds the inner project's schema did."""
    log = project.path / "builds.log"
    return log.read_text().split() if log.exists() else []


#: Source an inner test module starts with: ``record(name, *values)`` writes what a test
#: saw to ``out/<name>`` (read back by :func:`records`); ``WORKER`` is its xdist worker.
RECORD = textwrap.dedent(
    """
    import os
    from pathlib import Path

    OUT = Path(__file__).parent / "out"
    WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


    def record(name, *values):
        (OUT / str(name)).write_text(" ".join(str(v) for v in values))
    """
)


def write_tests(project: pytest.Pytester, name: str, source: str, helpers: str = RECORD) -> None:
    """Add the inner test module ``name``: ``helpers`` (:data:`RECORD`), then ``source``
    (dedented)."""
    project.makepyfile(**{name: helpers + textwrap.dedent(source)})


def records(project: pytest.Pytester) -> dict[str, str]:
    """What inner tests wrote to ``out/<name>`` (one file per test, no write races)."""
    return {p.name: p.read_text() for p in sorted((project.path / "out").iterdir())}


def mysql_dialect_missing() -> str | None:
    """Why MariaDB variants cannot run yet, or None."""
    import importlib.util

    if importlib.util.find_spec("freshdb.dialects.mysql") is None:
        return "freshdb.dialects.mysql does not exist yet: no MariaDB support to test"
    return None


def server_fixture_source(table: str) -> str:
    """Source of a module whose ``freshdb_server`` fixture builds ``table``.

    A session fixture over this run's sticky Postgres server, pool size 1: for a
    conftest or a ``-p`` plugin that overrides freshdb's own.
    """
    return textwrap.dedent(
        f"""
        import pytest
        from sqlalchemy import text

        import freshdb


        def build(connection):
            connection.execute(text("CREATE TABLE {table} (email varchar(200))"))


        @pytest.fixture(scope="session")
        def freshdb_server(request):
            option = request.config.getoption
            with freshdb.DatabaseServer(
                "postgres",
                schema=build,
                image=option("freshdb_image"),
                mode="sticky",
                prefix=option("freshdb_prefix"),
                pool_size=1,
            ) as server:
                yield server
        """
    )


def server_use_source(table: str) -> str:
    """Source of three tests that each find the overriding server's ``table``."""
    return textwrap.dedent(
        f"""
        import pytest
        import sqlalchemy as sa


        @pytest.mark.parametrize("n", range(3))
        def test_uses_the_overriding_server(freshdb_server, freshdb_engine, n):
            assert freshdb_server.settings.pool_size == 1
            assert sa.inspect(freshdb_engine).get_table_names() == ["{table}"]
        """
    )


def worker_report(worker: str, **fields: object) -> dict[str, object]:
    """A worker's report for the end-of-session summary: a reused sticky Postgres
    server and template, an idle pool; ``fields`` replace or add entries."""
    report: dict[str, object] = {
        "worker": worker,
        "engine": "postgres",
        "image": "img:1",
        "mode": "sticky",
        "url": "postgresql+psycopg://postgres:***@127.0.0.1:5432/postgres",
        "container": "p-postgres-1",
        "server_reused": True,
        "template": "p_t_0123",
        "template_reused": True,
        "template_build_seconds": 0.0,
        "pool": dict.fromkeys(("size", "acquired", "waits", "wait_seconds"), 0),
    }
    report.update(fields)
    return report
