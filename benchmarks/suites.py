"""Whole suites: N tiny tests, each on a fresh database, run by pytest in a subprocess.

The test files are generated into a temporary directory, one directory per variant,
each with its own ``pytest.ini`` and ``conftest.py``:

- ``freshdb``: the plugin's ``freshdb_connection`` (a copy per test from the pool);
- ``savepoint``: the plugin's ``freshdb_transaction`` (one copy, rolled back per test);
- ``pytest-postgresql``: its ``postgresql_noproc`` + ``postgresql`` fixture factories
  against the same server (template per session, clone and drop per test);
- ``naive``: elefast's path (see :mod:`benchmarks.peers`) as a session + function fixture;
- ``floor``: one shared database for every test (a pooled engine): the cost of the
  tests themselves, whatever gives them a database.

Overhead per test = (wall - floor wall) / N, paired run by run. Before timing, every
variant runs once untimed (one file): imports are warm, and freshdb's template is
already built and cached on the bench server, as on a developer's second run. Runs
are interleaved (each repetition runs every variant), so drift on the shared machine
hits all of them alike. Serial runs also report the test process's peak RSS.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import peers
from benchmarks.context import (
    EXPECTED_CUSTOMERS,
    FIRST_QUERY,
    POSTGRES_SCHEMA,
    PREFIX,
    REPOSITORY,
    BenchContext,
    create_database_from_schema,
    postgres_url,
)
from benchmarks.memory import GROUP as MEMORY_GROUP
from benchmarks.report import Comparison, Figure, Target
from benchmarks.stats import Summary, overhead_per_test

GROUP_WALL = "Suite of {n} tests, each on a fresh database: wall time (pytest subprocess)"
GROUP_OVERHEAD = "Suite: overhead per test = (wall - floor wall) / {n}"
SHARED_DATABASE = "peer_shared"
TESTS_PER_FILE = 20
RSS_VARIABLE = "FRESHDB_BENCH_RSS_FILE"
QUARTER = Target("ratio", 0.25, "freshdb/peer <= 0.25")

_RSS_HOOK = """
import os
import resource


def pytest_unconfigure(config):
    path = os.environ.get("FRESHDB_BENCH_RSS_FILE")
    if path and not hasattr(config, "workerinput"):
        with open(path, "w") as stream:
            stream.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""

_SQLALCHEMY_COUNT = "{fixture}.exec_driver_sql(QUERY).scalar()"
_PSYCOPG_COUNT = "{fixture}.execute(QUERY).fetchone()[0]"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way of giving every test of the suite a database."""

    key: str
    label: str
    fixture: str
    count_expression: str
    conftest: str = ""
    ini: tuple[tuple[str, str], ...] = ()


def floor_conftest(url: str) -> str:
    """The floor's conftest: ``shared_connection``, a connection per test from one
    pooled engine on the already prepared database at ``url``."""
    return f"""
            import pytest
            import sqlalchemy


            @pytest.fixture(scope="session")
            def shared_engine():
                engine = sqlalchemy.create_engine({url!r})
                yield engine
                engine.dispose()


            @pytest.fixture
            def shared_connection(shared_engine):
                with shared_engine.connect() as connection:
                    yield connection
            """


def write_test_files(
    directory: Path, stem: str, query: str, fixture: str, body: Sequence[str], tests: int
) -> None:
    """Write ``tests`` tests on ``fixture``, :data:`TESTS_PER_FILE` to a file
    (``<stem>_00.py``, ...): each runs the lines of ``body`` (``QUERY`` is ``query``)."""
    for first in range(0, tests, TESTS_PER_FILE):
        lines = [f"QUERY = {query!r}", ""]
        for number in range(first, min(first + TESTS_PER_FILE, tests)):
            lines += ["", f"def test_{number}({fixture}):", *(f"    {b}" for b in body), ""]
        (directory / f"{stem}_{first // TESTS_PER_FILE:02d}.py").write_text("\n".join(lines))


def variants(context: BenchContext) -> list[Variant]:
    """The suite variants, all on the bench Postgres server."""
    address = context.postgres_address
    freshdb_ini = (
        ("freshdb_engine", "postgres"),
        ("freshdb_mode", "sticky"),
        ("freshdb_prefix", PREFIX),
        ("freshdb_schema", str(POSTGRES_SCHEMA)),
        ("freshdb_image", context.postgres_image),
    )
    address_literal = repr(dataclasses.asdict(address))
    return [
        Variant(
            "floor",
            "one shared database (the floor)",
            "shared_connection",
            _SQLALCHEMY_COUNT,
            floor_conftest(postgres_url(address, SHARED_DATABASE)),
        ),
        Variant(
            "freshdb",
            "freshdb plugin (freshdb_connection)",
            "freshdb_connection",
            _SQLALCHEMY_COUNT,
            ini=freshdb_ini,
        ),
        Variant(
            "savepoint",
            "freshdb savepoint mode (freshdb_transaction)",
            "freshdb_transaction",
            _SQLALCHEMY_COUNT,
            ini=freshdb_ini,
        ),
        Variant(
            "pytest_postgresql",
            "pytest-postgresql (noproc + postgresql fixtures)",
            "postgresql",
            _PSYCOPG_COUNT,
            f"""
            from pathlib import Path

            from pytest_postgresql import factories

            postgresql_noproc = factories.postgresql_noproc(
                host={address.host!r},
                port={address.port!r},
                user={address.user!r},
                password={address.password!r},
                dbname="peer_suite",
                load=[Path({str(POSTGRES_SCHEMA)!r})],
            )
            postgresql = factories.postgresql("postgresql_noproc")
            """,
        ),
        Variant(
            "naive",
            peers.NAIVE_LABEL,
            "naive_connection",
            _SQLALCHEMY_COUNT,
            f"""
            import uuid

            import pytest

            from benchmarks.context import create_database_from_schema, drop_database
            from benchmarks.peers import NaiveCloneServer
            from freshdb.dialects.base import ServerAddress

            ADDRESS = ServerAddress(**{address_literal})


            @pytest.fixture(scope="session")
            def naive_server():
                template = f"peer_naive_suite_{{uuid.uuid4().hex[:8]}}"
                create_database_from_schema(ADDRESS, template)
                server = NaiveCloneServer({postgres_url(address)!r}, template)
                yield server
                server.close()
                drop_database(ADDRESS, template)


            @pytest.fixture
            def naive_connection(naive_server):
                with naive_server.database() as engine, engine.connect() as connection:
                    yield connection
            """,
        ),
    ]


def write_suite(directory: Path, variant: Variant, tests: int) -> None:
    """Generate one variant's suite: ``pytest.ini``, ``conftest.py`` and the test files."""
    directory.mkdir(parents=True)
    ini_lines = [
        "[pytest]",
        "addopts = -p no:cacheprovider",
        "asyncio_default_fixture_loop_scope = function",
        *(f"{name} = {value}" for name, value in variant.ini),
    ]
    (directory / "pytest.ini").write_text("\n".join(ini_lines) + "\n")
    (directory / "conftest.py").write_text(textwrap.dedent(variant.conftest) + _RSS_HOOK)
    count = variant.count_expression.format(fixture=variant.fixture)
    assertion = f"assert {count} == {EXPECTED_CUSTOMERS}"
    write_test_files(directory, "test_suite", FIRST_QUERY, variant.fixture, [assertion], tests)


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    """What one pytest run took."""

    wall_seconds: float
    peak_rss_kib: int | None


def run_suite(directory: Path, tests: int, workers: int, *paths: str) -> SuiteRun:
    """Run pytest on a generated suite in a new process; raise unless every test passed."""
    rss_file = directory / "peak_rss"
    rss_file.unlink(missing_ok=True)
    environment = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPOSITORY), environment.get("PYTHONPATH", "")) if p
    )
    if workers == 0:
        environment[RSS_VARIABLE] = str(rss_file)
    command = [sys.executable, "-m", "pytest", "-q", *paths]
    if workers:
        command += ["-n", str(workers)]
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=directory, env=environment, capture_output=True, text=True, timeout=900
    )
    wall = time.perf_counter() - started
    if result.returncode != 0 or f"{tests} passed" not in result.stdout:
        raise RuntimeError(
            f"the suite in {directory.name} failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    rss = int(rss_file.read_text()) if rss_file.exists() else None
    return SuiteRun(wall, rss)


def run(context: BenchContext) -> list[Figure]:
    """Wall time, overhead per test and peak RSS of every variant, serial and ``-n 2``."""
    tests = context.count(200, 40)
    repetitions = context.count(3, 1)
    worker_counts = (0, 2)
    chosen = variants(context)
    create_database_from_schema(context.postgres_address, SHARED_DATABASE)
    walls: dict[tuple[str, int], list[float]] = {}
    rss: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-suites-") as temporary:
        root = Path(temporary)
        for variant in chosen:
            write_suite(root / variant.key, variant, tests)
            # Untimed warm-up: imports, bytecode, the server and freshdb's template.
            run_suite(root / variant.key, TESTS_PER_FILE, 0, "test_suite_00.py")
        for _ in range(repetitions):
            for workers in worker_counts:
                for variant in chosen:
                    outcome = run_suite(root / variant.key, tests, workers)
                    walls.setdefault((variant.key, workers), []).append(outcome.wall_seconds)
                    if outcome.peak_rss_kib is not None:
                        rss.setdefault(variant.key, []).append(outcome.peak_rss_kib / 1024)
    return [
        *_wall_figures(chosen, walls, tests, worker_counts),
        *_overhead_figures(chosen, walls, tests, worker_counts),
        *_rss_figures(chosen, rss),
    ]


def _mode(workers: int) -> str:
    return "serial" if workers == 0 else f"-n {workers}"


def _key(kind: str, variant: str, workers: int) -> str:
    return f"suite.{kind}.{variant}.{'serial' if workers == 0 else f'n{workers}'}"


def _wall_figures(
    chosen: list[Variant],
    walls: dict[tuple[str, int], list[float]],
    tests: int,
    workers: tuple[int, ...],
) -> list[Figure]:
    figures = []
    for count in workers:
        for variant in chosen:
            key = _key("wall", variant.key, count)
            peer = variant.key not in ("freshdb", "savepoint", "floor")
            warm = variant.key == "freshdb" and count == 0
            figures.append(
                Figure(
                    key,
                    GROUP_WALL.format(n=tests),
                    f"{variant.label}, {_mode(count)}",
                    "s",
                    Summary.of(walls[(variant.key, count)]),
                    Comparison(_key("wall", "freshdb", count), key) if peer else None,
                    note="template warm: built and cached before timing (untimed warm-up run)"
                    if warm
                    else "",
                )
            )
    return figures


def _overhead_figures(
    chosen: list[Variant],
    walls: dict[tuple[str, int], list[float]],
    tests: int,
    workers: tuple[int, ...],
) -> list[Figure]:
    figures = []
    for count in workers:
        floors = walls[("floor", count)]
        for variant in chosen:
            if variant.key == "floor":
                continue
            key = _key("overhead", variant.key, count)
            peer = variant.key not in ("freshdb", "savepoint")
            figures.append(
                Figure(
                    key,
                    GROUP_OVERHEAD.format(n=tests),
                    f"{variant.label}, {_mode(count)}",
                    "ms",
                    Summary.of(overhead_per_test(walls[(variant.key, count)], floors, tests)),
                    Comparison(_key("overhead", "freshdb", count), key) if peer else None,
                    targets=(QUARTER,) if peer else (),
                )
            )
    return figures


def _rss_figures(chosen: list[Variant], rss: dict[str, list[float]]) -> list[Figure]:
    figures = []
    for variant in chosen:
        if variant.key not in rss:
            continue
        key = f"memory.rss.{variant.key}"
        peer = variant.key not in ("freshdb", "savepoint", "floor")
        figures.append(
            Figure(
                key,
                MEMORY_GROUP,
                f"test process peak RSS, {variant.label}",
                "MiB",
                Summary.of(rss[variant.key]),
                Comparison("memory.rss.freshdb", key) if peer else None,
            )
        )
    return figures
