"""Savepoint mode per test, next to a fresh copy per test.

The steps of the plugin's ``freshdb_transaction`` fixture, in process: one copy for
the whole session, and per test a connection from its engine, an outer transaction,
a SAVEPOINT, the test's first query, and the rollback. (The 200-test suites run the
real fixture.)
"""

from __future__ import annotations

from benchmarks.context import EXPECTED_CUSTOMERS, FIRST_QUERY, BenchContext, wait_until_idle
from benchmarks.per_test import FRESHDB_POSTGRES
from benchmarks.report import Comparison, Figure
from benchmarks.stats import milliseconds, time_calls

GROUP = "Savepoint mode per test (freshdb_transaction: SAVEPOINT + rollback)"
KEY = "savepoint.postgres"


def run(context: BenchContext) -> list[Figure]:
    """Per-test cost of savepoint mode on Postgres."""
    server = context.postgres
    wait_until_idle(server)
    database = server.database()
    engine = database.engine()

    def savepoint_test() -> None:
        connection = engine.connect()
        outer = connection.begin()
        connection.begin_nested()
        try:
            assert connection.exec_driver_sql(FIRST_QUERY).scalar() == EXPECTED_CUSTOMERS
        finally:
            outer.rollback()
            connection.close()

    try:
        samples = time_calls(savepoint_test, context.count(300, 20))
    finally:
        database.release()
    return [
        Figure(
            KEY,
            GROUP,
            "freshdb savepoint mode, Postgres",
            "ms",
            milliseconds(samples),
            Comparison(KEY, FRESHDB_POSTGRES, "savepoint/fresh copy"),
        )
    ]
