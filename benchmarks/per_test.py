"""Per-test cost of a fresh migrated database: acquire + first query + release.

freshdb hands out a copy from a warm pool (each sample starts with the pool full and
idle: "warm"); the peers clone while the test waits. The copy itself (the work
freshdb's pool does in the background) is timed on its own too, for both engines,
next to Django's ``mysqldump | mysql`` on MariaDB.
"""

from __future__ import annotations

import itertools

from benchmarks import peers
from benchmarks.context import (
    EXPECTED_CUSTOMERS,
    FIRST_QUERY,
    POSTGRES_SCHEMA,
    BenchContext,
    create_database_from_schema,
    postgres_url,
    wait_until_idle,
)
from benchmarks.report import Comparison, Figure, Target
from benchmarks.stats import milliseconds, time_calls
from freshdb import DatabaseServer

GROUP_POSTGRES = "Per test, Postgres: fresh migrated database (acquire + first query + release)"
GROUP_MARIADB = "Per test, MariaDB: fresh database, and one copy of the template"

FRESHDB_POSTGRES = "per_test.postgres.freshdb"
FRESHDB_POSTGRES_CLONE = "per_test.postgres.freshdb_clone"
FRESHDB_MARIADB = "per_test.mariadb.freshdb"
FRESHDB_MARIADB_CLONE = "per_test.mariadb.freshdb_clone"

PPG_TEMPLATE = "peer_ppg_tmpl"
NAIVE_TEMPLATE = "peer_naive_tmpl"


def freshdb_test(server: DatabaseServer) -> None:
    """One test's database life in freshdb: acquire, first query through an Engine, release."""
    with server.database() as database, database.engine().connect() as connection:
        assert connection.exec_driver_sql(FIRST_QUERY).scalar() == EXPECTED_CUSTOMERS


def clone_samples(server: DatabaseServer, repetitions: int) -> list[float]:
    """Seconds per copy made the way freshdb's pool makes them (each dropped untimed)."""
    dialect = server.dialect
    connection = dialect.connect(server.address)
    names = (f"peer_fdclone_{number}" for number in itertools.count())
    made: list[str] = []
    try:
        template = server.template
        assert template is not None
        recipe = dialect.copy_recipe(connection, template)

        def drop_previous() -> None:
            while made:
                dialect.drop_database(connection, made.pop())

        def clone() -> None:
            name = next(names)
            made.append(name)
            dialect.clone(connection, recipe, name)

        samples = time_calls(clone, repetitions, before_each=drop_previous)
        drop_previous()
        return samples
    finally:
        connection.close()


def run(context: BenchContext) -> list[Figure]:
    """The per-test figures of both engines."""
    return [*_postgres(context), *_mariadb(context)]


def _postgres(context: BenchContext) -> list[Figure]:
    server, address = context.postgres, context.postgres_address
    repetitions = context.count(100, 10)
    peer_repetitions = context.count(60, 5)

    fresh = time_calls(
        lambda: freshdb_test(server), repetitions, before_each=lambda: wait_until_idle(server)
    )
    clones = clone_samples(server, context.count(40, 5))
    wait_until_idle(server)

    peers.janitor_template(address, PPG_TEMPLATE, POSTGRES_SCHEMA)

    def janitor_test() -> None:
        with peers.janitor_database(address, PPG_TEMPLATE) as connection:
            row = connection.execute(FIRST_QUERY).fetchone()
            assert row is not None and row[0] == EXPECTED_CUSTOMERS

    try:
        janitor = time_calls(janitor_test, peer_repetitions)
    finally:
        peers.drop_janitor_template(address, PPG_TEMPLATE)

    create_database_from_schema(address, NAIVE_TEMPLATE)
    naive_server = peers.NaiveCloneServer(postgres_url(address), NAIVE_TEMPLATE)

    def naive_test() -> None:
        with naive_server.database() as engine, engine.connect() as connection:
            assert connection.exec_driver_sql(FIRST_QUERY).scalar() == EXPECTED_CUSTOMERS

    try:
        naive = time_calls(naive_test, peer_repetitions)
    finally:
        naive_server.close()

    return [
        Figure(FRESHDB_POSTGRES, GROUP_POSTGRES, "freshdb, warm pool", "ms", milliseconds(fresh)),
        Figure(
            "per_test.postgres.pytest_postgresql",
            GROUP_POSTGRES,
            "pytest-postgresql DatabaseJanitor (template, noproc)",
            "ms",
            milliseconds(janitor),
            Comparison(FRESHDB_POSTGRES, "per_test.postgres.pytest_postgresql"),
        ),
        Figure(
            "per_test.postgres.naive",
            GROUP_POSTGRES,
            peers.NAIVE_LABEL,
            "ms",
            milliseconds(naive),
            Comparison(FRESHDB_POSTGRES, "per_test.postgres.naive"),
            note="elefast itself needs Python >= 3.14; its sync path, reproduced",
        ),
        Figure(
            FRESHDB_POSTGRES_CLONE,
            GROUP_POSTGRES,
            "(freshdb's background clone, STRATEGY FILE_COPY)",
            "ms",
            milliseconds(clones),
        ),
    ]


def _mariadb(context: BenchContext) -> list[Figure]:
    server = context.mariadb
    address = server.address
    fresh = time_calls(
        lambda: freshdb_test(server),
        context.count(60, 5),
        before_each=lambda: wait_until_idle(server),
    )
    clones = clone_samples(server, context.count(30, 5))
    wait_until_idle(server)

    container = context.container(server)
    template = server.template
    assert template is not None
    targets = (f"peer_dump_{number}" for number in itertools.count())
    made: list[str] = []

    def drop_previous() -> None:
        while made:
            peers.drop_mysql_database(address, made.pop())

    def dump_and_load() -> None:
        target = next(targets)
        made.append(target)
        peers.dump_and_load(container, address, template, target)

    try:
        dumps = time_calls(dump_and_load, context.count(20, 3), before_each=drop_previous)
    finally:
        drop_previous()

    return [
        Figure(FRESHDB_MARIADB, GROUP_MARIADB, "freshdb, warm pool", "ms", milliseconds(fresh)),
        Figure(
            FRESHDB_MARIADB_CLONE,
            GROUP_MARIADB,
            "freshdb one copy (the pool's background work)",
            "ms",
            milliseconds(clones),
            targets=(Target("median", 25.0, "copy <= 25 ms"),),
        ),
        Figure(
            "per_test.mariadb.dump_load",
            GROUP_MARIADB,
            "mariadb-dump | mariadb in the container (Django)",
            "ms",
            milliseconds(dumps),
            Comparison(FRESHDB_MARIADB_CLONE, "per_test.mariadb.dump_load", "freshdb copy/dump"),
        ),
    ]
