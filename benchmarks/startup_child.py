"""The process whose start-up is timed: ``python -m benchmarks.startup_child KIND JSON``.

It imports only the standard library before the work it stands for, so the time
the parent measures (from spawning it to reading ``READY``) is interpreter start,
the library's import and the work, nothing of the benchmark's own. After ``READY``
it cleans up (stops the server, removes a container) untimed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

READY = "READY"


def _ready() -> None:
    print(READY, flush=True)


def freshdb_first_database(options: dict[str, Any]) -> None:
    """Start (or reuse) a freshdb server and answer a query on a fresh copy."""
    import freshdb

    server = freshdb.DatabaseServer(
        "postgres",
        schema=options["schema"],
        image=options["image"],
        mode=options["mode"],
        prefix=options["prefix"],
    )
    with server, server.database() as database, database.engine().connect() as connection:
        connection.exec_driver_sql(options["query"]).scalar()
        _ready()


def freshdb_breakdown(options: dict[str, Any]) -> None:
    """As :func:`freshdb_first_database`, printing when each step ended (a JSON line of
    ``[seconds since the child's first line, step]``) after ``READY``.

    The steps are the child's own marks and freshdb's ``start:`` debug log lines.
    """
    import logging
    import time

    began = time.perf_counter()
    marks: list[tuple[float, str]] = []

    def mark(step: str) -> None:
        marks.append((round(time.perf_counter() - began, 4), step))

    class Marks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("start: "):
                mark(message.removeprefix("start: "))

    import freshdb
    from freshdb.server import DatabaseServer

    mark("imported freshdb.server")
    logger = logging.getLogger("freshdb")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Marks())
    server = DatabaseServer(
        "postgres",
        schema=options["schema"],
        image=options["image"],
        mode=options["mode"],
        prefix=options["prefix"],
    )
    mark("DatabaseServer made: dialect and driver imported")
    with server:
        mark("start() returned")
        with server.database() as database:
            mark("first database handed out")
            with database.engine().connect() as connection:
                connection.exec_driver_sql(options["query"]).scalar()
                mark("first query answered")
                _ready()
    assert isinstance(freshdb.__version__, str)
    print(json.dumps(marks), flush=True)


def import_freshdb(options: dict[str, Any]) -> None:
    """Only import what any first database needs (what a new process pays before any
    work): freshdb's server machinery, SQLAlchemy with its dialect of the Postgres
    driver, and the driver (freshdb imports the last two while a start waits)."""
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    import freshdb.dialects.postgres
    import freshdb.server  # noqa: F401

    _ready()


def testcontainers_first_query(options: dict[str, Any]) -> None:
    """testcontainers' PostgresContainer: start, then a first query (no schema)."""
    import psycopg

    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.15 keeps it here
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(options["image"], driver=None, labels=options["labels"])
    with container as postgres:
        with psycopg.connect(
            host=postgres.get_container_host_ip(),
            port=int(postgres.get_exposed_port(postgres.port)),
            user=postgres.username,
            password=postgres.password,
            dbname=postgres.dbname,
        ) as connection:
            connection.execute("SELECT 1").fetchone()
        _ready()


KINDS = {
    "freshdb": freshdb_first_database,
    "breakdown": freshdb_breakdown,
    "import": import_freshdb,
    "testcontainers": testcontainers_first_query,
}

if __name__ == "__main__":
    KINDS[sys.argv[1]](json.loads(sys.argv[2]))
