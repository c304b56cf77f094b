"""A seeded suite: N tests, each needing the same 2,000 seeded rows, four ways.

Most real suites spend more time seeding (fixtures, factories, reference rows) than
migrating. Every test here needs the benchmark schema plus 2,000 rows over four
tables (400 customers, 400 orders, 800 order items, 400 reviews), inserted the way
a factory would (``executemany`` through SQLAlchemy), and checks their counts.
Generated into a temporary directory like :mod:`benchmarks.suites`, run by pytest
in a subprocess, serially:

- ``seed_per_test``: a fresh copy per test (``freshdb_connection``), seeded in the
  test's own fixture: isolated, and pays the seed every time;
- ``shared_rollback``: one freshdb copy seeded once per session, each test inside a
  transaction rolled back afterwards: cheap, but a test that commits leaks;
- ``snapshot``: ``freshdb_server.snapshot(seed)`` once per session (built once,
  then reused by every later session), each test on a fresh copy of it;
- ``unseeded``: a fresh copy per test without the rows (``freshdb_connection``):
  the reference a snapshot copy should cost no more than twice of;
- ``floor``: one shared, already seeded database through a pooled engine: what
  the tests cost whatever gives them their data.

Overhead per test = (wall - floor wall) / N, paired run by run. Every variant runs
once untimed first (imports warm; the template and the snapshot built and cached
on the bench server, as on a developer's second run). Runs are interleaved.
"""

from __future__ import annotations

import dataclasses
import tempfile
import textwrap
from pathlib import Path

from benchmarks.context import (
    POSTGRES_SCHEMA,
    PREFIX,
    BenchContext,
    create_database_from_schema,
    postgres_url,
)
from benchmarks.report import Comparison, Figure, Target
from benchmarks.stats import Summary, overhead_per_test
from benchmarks.suites import TESTS_PER_FILE, floor_conftest, run_suite, write_test_files

GROUP_WALL = "Seeded suite of {n} tests (2,000 seeded rows each): wall time (pytest subprocess)"
GROUP_OVERHEAD = "Seeded suite: overhead per test = (wall - floor wall) / {n}"
SHARED_DATABASE = "peer_seeded_shared"
#: PRODUCT target (issue 16): a snapshot copy per test costs at most twice an unseeded one.
TWICE = Target("ratio", 2.0, "snapshot/unseeded <= 2")
SEEDED_ROWS = 2000

#: The seed, a module of the generated suite: every variant runs the same code.
SEED_MODULE = '''
import sqlalchemy as sa

CUSTOMERS, ORDERS, ITEMS, REVIEWS = 400, 400, 800, 400  # 2,000 rows


def seed(connection):
    """Insert the suite's rows as a factory would: one executemany per table."""
    connection.execute(
        sa.text(
            "INSERT INTO customers (id, city_id, email, name) "
            "VALUES (:id, :city, :email, :name)"
        ),
        [
            {"id": 1000 + n, "city": 1 + n % 30, "email": f"seed{n}@example.com",
             "name": f"Seeded {n}"}
            for n in range(CUSTOMERS)
        ],
    )
    connection.execute(
        sa.text("INSERT INTO orders (id, customer_id, status) VALUES (:id, :customer, :status)"),
        [
            {"id": 1000 + n, "customer": 1000 + n % CUSTOMERS, "status": ("new", "paid")[n % 2]}
            for n in range(ORDERS)
        ],
    )
    connection.execute(
        sa.text(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
            "VALUES (:order, :product, :quantity, :price)"
        ),
        [
            {"order": 1000 + n % ORDERS, "product": 1 + n % 100, "quantity": 1 + n % 4,
             "price": 9.99}
            for n in range(ITEMS)
        ],
    )
    connection.execute(
        sa.text(
            "INSERT INTO reviews (product_id, customer_id, rating, body) "
            "VALUES (:product, :customer, :rating, :body)"
        ),
        [
            {"product": 1 + n % 100, "customer": 1000 + n, "rating": 1 + n % 5,
             "body": f"Seeded review {n}"}
            for n in range(REVIEWS)
        ],
    )
'''

#: What every test asks: the seeded tables' rows, summed.
QUERY = (
    "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM orders)"
    " + (SELECT count(*) FROM order_items) + (SELECT count(*) FROM reviews)"
)
#: The schema's own rows in those tables (100 + 100 + 150 + 50).
UNSEEDED_ROWS = 400


@dataclasses.dataclass(frozen=True)
class SeededVariant:
    """One way of giving every test its seeded database."""

    key: str
    label: str
    fixture: str
    expected_rows: int
    conftest: str = ""


def variants(floor_url: str) -> list[SeededVariant]:
    """The seeded suite's variants, all on the bench Postgres server; the floor's
    seeded database is at ``floor_url``."""
    seeded = UNSEEDED_ROWS + SEEDED_ROWS
    return [
        SeededVariant(
            "floor",
            "one shared seeded database (the floor)",
            "shared_connection",
            seeded,
            floor_conftest(floor_url),
        ),
        SeededVariant(
            "seed_per_test",
            "seed per test on a fresh copy",
            "seeded_connection",
            seeded,
            """
            import pytest

            from seed_data import seed


            @pytest.fixture
            def seeded_connection(freshdb_connection):
                seed(freshdb_connection)
                yield freshdb_connection
            """,
        ),
        SeededVariant(
            "shared_rollback",
            "one shared seeded copy, rollback per test",
            "seeded_connection",
            seeded,
            """
            import pytest

            from seed_data import seed


            @pytest.fixture(scope="session")
            def seeded_engine(freshdb_server):
                with freshdb_server.database() as database:
                    engine = database.engine()
                    with engine.begin() as connection:
                        seed(connection)
                    yield engine


            @pytest.fixture
            def seeded_connection(seeded_engine):
                with seeded_engine.connect() as connection:
                    transaction = connection.begin()
                    yield connection
                    transaction.rollback()
            """,
        ),
        SeededVariant(
            "snapshot",
            "snapshot copies (server.snapshot)",
            "seeded_connection",
            seeded,
            """
            import pytest

            from seed_data import seed


            @pytest.fixture(scope="session")
            def seeded(freshdb_server):
                # As many copies kept ready as the template's pool: like for like.
                return freshdb_server.snapshot(seed, pool_size=freshdb_server.stats()["size"])


            @pytest.fixture
            def seeded_connection(seeded):
                with seeded.database() as database, database.engine().connect() as connection:
                    yield connection
            """,
        ),
        SeededVariant(
            "unseeded",
            "unseeded fresh copies (freshdb_connection)",
            "freshdb_connection",
            UNSEEDED_ROWS,
        ),
    ]


def write_suite(directory: Path, variant: SeededVariant, tests: int, context: BenchContext) -> None:
    """Generate one variant's suite: ini, conftest, the seed module and the tests."""
    directory.mkdir(parents=True)
    ini = [
        "[pytest]",
        "addopts = -p no:cacheprovider",
        "pythonpath = .",
        "freshdb_engine = postgres",
        "freshdb_mode = sticky",
        f"freshdb_prefix = {PREFIX}",
        f"freshdb_schema = {POSTGRES_SCHEMA}",
        f"freshdb_image = {context.postgres_image}",
    ]
    (directory / "pytest.ini").write_text("\n".join(ini) + "\n")
    (directory / "conftest.py").write_text(textwrap.dedent(variant.conftest))
    (directory / "seed_data.py").write_text(SEED_MODULE)
    body = [
        f"rows = {variant.fixture}.exec_driver_sql(QUERY).scalar()",
        f"assert rows == {variant.expected_rows}",
    ]
    write_test_files(directory, "test_seeded", QUERY, variant.fixture, body, tests)


def create_shared_database(context: BenchContext) -> None:
    """The floor's database: the schema and the seed, made once before timing."""
    import importlib.util

    import sqlalchemy

    create_database_from_schema(context.postgres_address, SHARED_DATABASE)
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-seed-") as temporary:
        module_path = Path(temporary) / "seed_data.py"
        module_path.write_text(SEED_MODULE)
        spec = importlib.util.spec_from_file_location("seed_data", module_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    engine = sqlalchemy.create_engine(postgres_url(context.postgres_address, SHARED_DATABASE))
    try:
        with engine.begin() as connection:
            module.seed(connection)
    finally:
        engine.dispose()


def run(context: BenchContext) -> list[Figure]:
    """Wall time and overhead per test of every variant, serial."""
    tests = context.count(200, 40)
    repetitions = context.count(3, 1)
    chosen = variants(postgres_url(context.postgres_address, SHARED_DATABASE))
    create_shared_database(context)
    walls: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-seeded-") as temporary:
        root = Path(temporary)
        for variant in chosen:
            write_suite(root / variant.key, variant, tests, context)
            # Untimed warm-up: imports, and the template and snapshot built and cached.
            run_suite(root / variant.key, TESTS_PER_FILE, 0, "test_seeded_00.py")
        for _ in range(repetitions):
            for variant in chosen:
                outcome = run_suite(root / variant.key, tests, 0)
                walls.setdefault(variant.key, []).append(outcome.wall_seconds)
    return [*_wall_figures(chosen, walls, tests), *_overhead_figures(chosen, walls, tests)]


def _key(kind: str, variant: str) -> str:
    return f"seeded.{kind}.{variant}"


def _wall_figures(
    chosen: list[SeededVariant], walls: dict[str, list[float]], tests: int
) -> list[Figure]:
    return [
        Figure(
            _key("wall", variant.key),
            GROUP_WALL.format(n=tests),
            f"{variant.label}, serial",
            "s",
            Summary.of(walls[variant.key]),
        )
        for variant in chosen
    ]


def _overhead_figures(
    chosen: list[SeededVariant], walls: dict[str, list[float]], tests: int
) -> list[Figure]:
    figures = []
    floors = walls["floor"]
    for variant in chosen:
        if variant.key == "floor":
            continue
        key = _key("overhead", variant.key)
        comparison, targets = None, ()
        if variant.key == "snapshot":
            comparison = Comparison(key, _key("overhead", "unseeded"), "snapshot/unseeded")
            targets = (TWICE,)
        elif variant.key in ("seed_per_test", "shared_rollback"):
            comparison = Comparison(_key("overhead", "snapshot"), key, "snapshot/this")
        figures.append(
            Figure(
                key,
                GROUP_OVERHEAD.format(n=tests),
                f"{variant.label}, serial",
                "ms",
                Summary.of(overhead_per_test(walls[variant.key], floors, tests)),
                comparison,
                targets=targets,
            )
        )
    return figures
