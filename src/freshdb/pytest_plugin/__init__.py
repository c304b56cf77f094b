"""The pytest plugin: a fresh database for every test, zero boilerplate.

Registered through the ``pytest11`` entry point, so installing freshdb is enough::

    def test_signup(freshdb_connection):
        freshdb_connection.execute(...)

Fixtures: ``freshdb_server`` (session), ``freshdb`` (a :class:`~freshdb.Database`
per test), ``freshdb_url``, ``freshdb_engine``, ``freshdb_connection``,
``freshdb_async_engine``, and savepoint mode: ``freshdb_transaction`` and
``freshdb_session`` (one copy per worker, each test rolled back).

Configuration, highest first: ``--freshdb-*`` options > ``freshdb_*`` ini options >
``FRESHDB_*`` environment variables > ``[tool.freshdb]`` in pyproject.toml > defaults.
``@pytest.mark.freshdb(engine="mariadb", ...)`` gives a test or module another server;
:func:`server_fixture` makes extra server fixtures. Overriding ``freshdb_server`` in a
conftest gives full control.

The plugin is inert until a test asks for one of its fixtures: loading it, collecting
tests, and running tests that use no freshdb fixture start nothing and call no Docker.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from freshdb.database import Database
from freshdb.django import pytest_integration as django_integration
from freshdb.errors import FreshDBError
from freshdb.pytest_plugin import reporting
from freshdb.pytest_plugin.options import (
    explicit_arguments_of,
    keep_failed,
    marker_overrides,
    register_options,
)
from freshdb.pytest_plugin.savepoints import ENDED_TRANSACTION_MESSAGE, Outcome, SavepointTest
from freshdb.pytest_plugin.servers import BrokerClient, ServerRegistry, ThrowawayBroker
from freshdb.server import DatabaseServer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["database_fixture", "server_fixture"]

_REGISTRY = pytest.StashKey[ServerRegistry]()
_BROKER = pytest.StashKey[ThrowawayBroker]()
_WORKER_REPORTS = pytest.StashKey[list[dict[str, Any]]]()
_SERVER_REPORTS = pytest.StashKey[list[dict[str, Any]]]()
_KEEP_FAILED = pytest.StashKey[bool]()
# The databases a test was handed, so a failure can keep them.
_HANDED_OUT = pytest.StashKey[list[tuple[Database, DatabaseServer]]]()
_BROKER_INPUT = "freshdb_broker"
_WORKER_OUTPUT = "freshdb_servers"


# -- hooks ---------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--freshdb-*`` options and ``freshdb_*`` ini options."""
    register_options(parser)
    django_integration.register_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and prepare (but start nothing of) the session's servers."""
    config.addinivalue_line(
        "markers",
        "freshdb(engine=None, **settings): give this test's freshdb fixtures a server with "
        "these settings (engine, image, mode, url, schema, pool_size, ...)",
    )
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    broker_directory = (workerinput or {}).get(_BROKER_INPUT)
    config.stash[_REGISTRY] = ServerRegistry(
        explicit_arguments_of(config),
        config.rootpath,
        worker=str((workerinput or {}).get("workerid", "main")),
        broker=BrokerClient(Path(broker_directory)) if broker_directory else None,
    )
    config.stash[_KEEP_FAILED] = keep_failed(config)
    config.stash[_WORKER_REPORTS] = []
    django_integration.configure(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker where to ask for a shared throwaway server."""
    config: pytest.Config = node.config
    broker = config.stash.get(_BROKER, None)
    if broker is None:
        broker = config.stash[_BROKER] = ThrowawayBroker()
    node.workerinput[_BROKER_INPUT] = str(broker.directory)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's server figures for the summary."""
    output = getattr(node, "workeroutput", None) or {}
    node.config.stash[_WORKER_REPORTS].extend(output.get(_WORKER_OUTPUT, []))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The configured server (it is not started yet, and may never be)."""
    try:
        settings = config.stash[_REGISTRY].spec().settings
    except FreshDBError as exc:
        return [f"freshdb: configuration error (tests using freshdb fixtures will fail): {exc}"]
    return [reporting.header_line(settings)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """With ``--freshdb-keep-failed``: keep a failed test's databases, say where they are."""
    report = yield
    _keep_if_failed(item, report)
    return report


def _keep_if_failed(item: pytest.Item, report: pytest.TestReport) -> None:
    if report.when not in ("setup", "call") or not report.failed:
        return
    if not item.config.stash.get(_KEEP_FAILED, False):
        return
    for database, server in item.stash.get(_HANDED_OUT, []):
        if database.kept:
            continue
        database.keep()  # the pool renames it when the fixture releases it
        kept = reporting.kept_database(
            database, server.settings, item.config.stash[_REGISTRY].cli_defaults()
        )
        report.sections.append((reporting.KEPT_SECTION, kept.section()))
        report.user_properties.append((reporting.KEPT_PROPERTY, f"{kept.name} {kept.url}"))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop this process's servers; a worker sends its figures to the controller."""
    config = session.config
    registry = config.stash.get(_REGISTRY, None)
    if registry is None:
        return
    reports = registry.close()
    config.stash[_SERVER_REPORTS] = reports
    workeroutput: dict[str, Any] | None = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_WORKER_OUTPUT] = reports


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The servers used (once, across workers), templates, kept databases; -v: pools."""
    reports = [*config.stash.get(_SERVER_REPORTS, []), *config.stash.get(_WORKER_REPORTS, [])]
    stats = terminalreporter.stats
    kept = reporting.kept_from_reports([*stats.get("failed", []), *stats.get("error", [])])
    if not reports and not kept:
        return
    terminalreporter.ensure_newline()
    terminalreporter.section("freshdb")
    for line in reporting.summary_lines(reports, kept, verbose=config.option.verbose > 0):
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Last resort for an interrupted session; on the controller, remove throwaways."""
    registry = config.stash.get(_REGISTRY, None)
    if registry is not None:
        registry.close()
    broker = config.stash.get(_BROKER, None)
    if broker is not None:
        broker.close()


# -- how a test gets its server and database ------------------------------------------
def _registry(request: pytest.FixtureRequest) -> ServerRegistry:
    return request.config.stash[_REGISTRY]


def session_server(config: pytest.Config, overrides: Mapping[str, Any]) -> DatabaseServer:
    """The session's started server for the run's settings with ``overrides``.

    For integrations (pytest-django's): the server is shared with the plugin's
    fixtures, one throwaway container serves every xdist worker, and the plugin
    stops it at the session's end.
    """
    registry = config.stash[_REGISTRY]
    return registry.server(registry.spec(overrides))


def _server_for_test(request: pytest.FixtureRequest) -> DatabaseServer:
    """The server a marker picks, else the ``freshdb_server`` fixture (maybe the user's)."""
    overrides = marker_overrides(request.node) if isinstance(request.node, pytest.Item) else {}
    if overrides:
        registry = _registry(request)
        return registry.server(registry.spec(overrides))
    server: DatabaseServer = request.getfixturevalue("freshdb_server")
    return server


def _hand_out(request: pytest.FixtureRequest, server: DatabaseServer) -> Iterator[Database]:
    database = server.database()
    handed_out = request.node.stash.setdefault(_HANDED_OUT, [])
    handed_out.append((database, server))
    try:
        yield database
    finally:
        _registry(request).note(server)
        database.release()


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def freshdb_server(request: pytest.FixtureRequest) -> DatabaseServer:
    """The session's started :class:`~freshdb.DatabaseServer` (configured by options).

    Override it in a conftest for full control; ``freshdb`` and the fixtures built on
    it then use yours.
    """
    registry = _registry(request)
    return registry.server(registry.spec())


@pytest.fixture
def freshdb(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh copy of the template for this test, released (dropped) afterwards."""
    yield from _hand_out(request, _server_for_test(request))


@pytest.fixture
def freshdb_url(freshdb: Database) -> URL:
    """The SQLAlchemy URL (sync driver) of this test's fresh database."""
    return freshdb.url


@pytest.fixture
def freshdb_engine(freshdb: Database) -> Engine:
    """A SQLAlchemy ``Engine`` on this test's fresh database (disposed afterwards)."""
    return freshdb.engine()


@pytest.fixture
def freshdb_connection(freshdb_engine: Engine) -> Iterator[Connection]:
    """A SQLAlchemy ``Connection`` to this test's fresh database."""
    with freshdb_engine.connect() as connection:
        yield connection


@pytest.fixture
def freshdb_async_engine(freshdb: Database) -> AsyncEngine:
    """A SQLAlchemy ``AsyncEngine`` on this test's fresh database.

    A plain fixture, so it serves pytest-asyncio and anyio tests alike. Its
    connections are not pooled: each closes inside the test's event loop, where it
    was opened, instead of being left for a loop that no longer runs.
    """
    return freshdb.async_engine(poolclass=NullPool)


@pytest.fixture
def freshdb_transaction(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """Savepoint mode: a ``Connection`` inside a transaction rolled back after the test.

    Every test of a worker shares one copy of the template; the test runs inside an
    outer transaction with a SAVEPOINT set, and the rollback at the end undoes its
    writes. Cheaper than a copy per test, but only for code that stays inside the
    transaction: use ``freshdb_session`` for code that calls ``commit()``, and the
    ``freshdb`` fixture for tests that commit or run DDL on MySQL/MariaDB (which
    commits implicitly). Sequences are not rolled back. A test that commits anyway
    fails with a message saying so, and the worker's copy is replaced, so the tests
    after it still start fresh.
    """
    server = _server_for_test(request)
    registry = _registry(request)
    database = registry.shared_database(server)
    connection = database.engine().connect()
    try:
        test = SavepointTest(connection)
    except BaseException:
        connection.close()
        raise
    try:
        yield connection
    finally:
        outcome = test.end()
        connection.close()
        registry.note(server)
        if outcome is not Outcome.ROLLED_BACK:
            registry.replace_shared_database(server)
    if outcome is Outcome.COMMITTED:
        pytest.fail(ENDED_TRANSACTION_MESSAGE, pytrace=False)


@pytest.fixture
def freshdb_session(freshdb_transaction: Connection) -> Iterator[Session]:
    """Savepoint mode: a SQLAlchemy ``Session`` whose ``commit()`` stays inside the test.

    Bound with ``join_transaction_mode="create_savepoint"`` (SQLAlchemy's "joining a
    Session into an external transaction"): ``commit()`` and ``rollback()`` work on
    savepoints, and everything is rolled back after the test.
    """
    session = Session(bind=freshdb_transaction, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()


# -- factories ------------------------------------------------------------------------
def server_fixture(*, name: str | None = None, **settings: Any) -> Callable[..., Any]:
    """A session fixture with a server of its own settings, e.g. in a conftest::

        mariadb_server = server_fixture(engine="mariadb")
        reports_server = server_fixture(schema="reports/schema.sql")

    ``settings`` are :class:`freshdb.Settings` names (plus ``schema=``, any object
    ``DatabaseServer`` accepts); they win over the ``--freshdb-*`` options. Servers
    are shared by equal settings within a session, with markers too.
    """

    def server(request: pytest.FixtureRequest) -> DatabaseServer:
        registry = _registry(request)
        return registry.server(registry.spec(settings))

    server.__doc__ = f"A freshdb server with {settings!r} (from freshdb.pytest_plugin)."
    return pytest.fixture(scope="session", name=name)(server)


def database_fixture(
    server: str = "freshdb_server", *, name: str | None = None
) -> Callable[..., Any]:
    """A function fixture: a fresh database from the server fixture named ``server``.

    In a conftest::

        mariadb_server = server_fixture(engine="mariadb")
        mariadb_db = database_fixture("mariadb_server")

    Like ``freshdb``, the database is kept on failure with ``--freshdb-keep-failed``.
    """

    def database(request: pytest.FixtureRequest) -> Iterator[Database]:
        yield from _hand_out(request, request.getfixturevalue(server))

    database.__doc__ = f"A fresh database from the {server!r} fixture."
    return pytest.fixture(name=name)(database)
