"""Snapshots in the pytest plugin, end to end: inner pytest runs against real containers.

The inner project's template (``schema_mod:build``) holds ``items`` with one row;
its seed (``seed_mod:seed``) adds three rows and appends a line to ``seeds.log``
each time it really runs, so the tests count seed runs across sessions and xdist
workers.
"""

from __future__ import annotations

import re
import textwrap

import pytest
import sqlalchemy as sa

from freshdb import naming

from ..conftest import IMAGE_VARIABLES, ServerUnderTest
from .conftest import RECORD, AdminView, records, write_tests

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.docker, pytest.mark.server]

SEEDED = ["alpha", "beta", "gamma", "seed"]

SEED_MODULE = textwrap.dedent(
    """
    from pathlib import Path

    from sqlalchemy import text


    def seed(connection):
        with open(Path(__file__).parent / "seeds.log", "a") as log:
            log.write("seeded\\n")
        connection.execute(
            text("INSERT INTO items (name) VALUES ('alpha'), ('beta'), ('gamma')")
        )
    """
)

CONFTEST = textwrap.dedent(
    """
    from freshdb.pytest_plugin import snapshot_fixture

    from seed_mod import seed

    reference_db = snapshot_fixture(seed)
    """
)

#: The inner tests' helpers: ``record`` and ``WORKER``, ``names`` and ``write``, pytest.
HELPERS = RECORD + textwrap.dedent(
    """
    import pytest
    from sqlalchemy import text


    def names(connection):
        rows = connection.execute(text("SELECT name FROM items ORDER BY name")).scalars()
        return list(rows)


    def write(connection, name):
        connection.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": name})
        connection.commit()
    """
)


def seeds(project: pytest.Pytester) -> int:
    """How many times the seed really ran."""
    log = project.path / "seeds.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(*args, timeout=280)


@pytest.fixture
def seeded_project(inner_project: pytest.Pytester) -> pytest.Pytester:
    inner_project.makepyfile(seed_mod=SEED_MODULE)
    inner_project.makeconftest(CONFTEST)
    return inner_project


def test_each_test_gets_a_fresh_copy_of_the_seeded_state_seeded_once_across_sessions(
    seeded_project: pytest.Pytester, inner_options: list[str], postgres_admin: AdminView
) -> None:
    write_tests(
        seeded_project,
        "test_seeded",
        """
        @pytest.mark.parametrize("n", range(6))
        def test_fixture(reference_db, n):
            with reference_db.engine().connect() as connection:
                assert names(connection) == ["alpha", "beta", "gamma", "seed"]
                write(connection, f"written by {n}")  # never seen by the next test
                assert len(names(connection)) == 5
            record(f"fixture{n}", reference_db.name)


        @pytest.mark.freshdb(snapshot="seed_mod:seed")
        @pytest.mark.parametrize("n", range(3))
        def test_marker(freshdb, freshdb_connection, n):
            assert names(freshdb_connection) == ["alpha", "beta", "gamma", "seed"]
            write(freshdb_connection, f"marker {n}")
            record(f"marker{n}", freshdb.name)


        def test_unmarked_tests_get_the_template(freshdb_connection):
            assert names(freshdb_connection) == ["seed"]
        """,
        helpers=HELPERS,
    )
    result = run(seeded_project, *inner_options)
    result.assert_outcomes(passed=10)
    # The fixture's function and the marker's import path are one seed: one snapshot.
    assert seeds(seeded_project) == 1
    copies = records(seeded_project)
    assert len(set(copies.values())) == 9, "a copy was handed out twice"
    (snapshot,) = re.findall(r"  snapshot: (\S+) \(built in ", result.stdout.str())
    fingerprint = naming.parse_database_name(postgres_admin.prefix, snapshot)
    assert fingerprint is not None and fingerprint.kind == "template"
    for name in copies.values():
        parsed = naming.parse_database_name(postgres_admin.prefix, name)
        assert parsed is not None and parsed.kind == "copy"
        assert fingerprint.fingerprint.startswith(parsed.fingerprint)  # a copy of the snapshot
    assert postgres_admin.of_template(snapshot, "copy") == []

    # A new session reuses the snapshot on the server: the seed does not run again.
    result = run(seeded_project, *inner_options)
    result.assert_outcomes(passed=10)
    assert seeds(seeded_project) == 1
    result.stdout.fnmatch_lines([f"  snapshot: {snapshot} (reused)"])


def test_under_xdist_the_seed_runs_once_for_all_workers(
    seeded_project: pytest.Pytester, inner_options: list[str]
) -> None:
    write_tests(
        seeded_project,
        "test_parallel",
        """
        @pytest.mark.parametrize("n", range(12))
        def test_parallel(reference_db, n):
            with reference_db.engine().connect() as connection:
                assert names(connection) == ["alpha", "beta", "gamma", "seed"]
                write(connection, f"written by {n}")
            record(f"{n:02d}", WORKER, reference_db.name)
        """,
        helpers=HELPERS,
    )
    result = run(seeded_project, *inner_options, "-n", "2")
    result.assert_outcomes(passed=12)
    seen = [value.split() for value in records(seeded_project).values()]
    assert {worker for worker, _ in seen} == {"gw0", "gw1"}
    assert len({name for _, name in seen}) == 12
    assert seeds(seeded_project) == 1, "the seed ran more than once"
    result.stdout.fnmatch_lines(["  snapshot: * (built in * by gw*, reused by 1 other worker(s))"])


def test_keep_failed_keeps_a_failing_tests_snapshot_copy(
    seeded_project: pytest.Pytester, inner_options: list[str], postgres_admin: AdminView
) -> None:
    write_tests(
        seeded_project,
        "test_fails",
        """
        @pytest.mark.parametrize("n", range(2))
        def test_maybe_fails(reference_db, n):
            with reference_db.engine().connect() as connection:
                write(connection, f"written by {n}")
            assert n == 0, "test 1 fails on purpose"
        """,
        helpers=HELPERS,
    )
    result = run(seeded_project, *inner_options, "--freshdb-keep-failed")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    (kept,) = re.findall(r"freshdb kept this test's database as (\S+)", output)
    assert re.search(rf"url: +postgresql\+psycopg://postgres:\*\*\*@\S+/{kept}\b", output)
    try:
        url = sa.engine.URL.create(
            "postgresql+psycopg",
            username=postgres_admin.address.user,
            password=postgres_admin.address.password,
            host=postgres_admin.address.host,
            port=postgres_admin.address.port,
            database=kept,
        )
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT name FROM items ORDER BY name"))
            assert list(rows.scalars()) == sorted([*SEEDED, "written by 1"])
        engine.dispose()
    finally:
        postgres_admin.drop(kept)


def test_savepoint_mode_a_module_scope_and_another_engine_family(
    seeded_project: pytest.Pytester,
    inner_options: list[str],
    mysql_family: ServerUnderTest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The run's --freshdb-image is a Postgres image: a MySQL-family server takes its own.
    monkeypatch.setenv(IMAGE_VARIABLES[mysql_family.engine], mysql_family.image)
    write_tests(
        seeded_project,
        "test_more",
        f"""
        from sqlalchemy import text

        from freshdb.pytest_plugin import snapshot_fixture
        from seed_mod import seed

        shared_db = snapshot_fixture(seed, scope="module")


        @pytest.mark.freshdb(snapshot=seed)
        @pytest.mark.parametrize("n", range(2))
        def test_savepoint_mode(freshdb_transaction, n):
            # Each test's writes are rolled back on the worker's copy of the snapshot.
            assert names(freshdb_transaction) == ["alpha", "beta", "gamma", "seed"]
            freshdb_transaction.execute(text("INSERT INTO items (name) VALUES ('x')"))
            database = freshdb_transaction.execute(text("SELECT current_database()"))
            record(f"savepoint{{n}}", database.scalar_one())


        @pytest.mark.parametrize("n", range(2))
        def test_module_scope_shares_one_copy(shared_db, n):
            with shared_db.engine().connect() as connection:
                write(connection, f"shared {{n}}")
                assert len(names(connection)) == 5 + n  # the first test's row stays
            record(f"shared{{n}}", shared_db.name)


        @pytest.mark.freshdb(engine="{mysql_family.engine}", snapshot=seed)
        def test_mysql_family(freshdb_connection):
            assert freshdb_connection.dialect.name in ("mysql", "mariadb")
            assert names(freshdb_connection) == ["alpha", "beta", "gamma", "seed"]
        """,
        helpers=HELPERS,
    )
    result = run(seeded_project, *inner_options)
    result.assert_outcomes(passed=5)
    seen = records(seeded_project)
    assert seen["savepoint0"] == seen["savepoint1"]  # one copy, rolled back in between
    assert seen["shared0"] == seen["shared1"]
    assert seeds(seeded_project) == 2  # once on the Postgres server, once on the other
