"""The plugin's fixtures, and how a test gets its server and database.

This module is not the entry-point plugin: :func:`freshdb.pytest_plugin.pytest_configure`
registers these fixtures, leaving out every name another plugin already defines, so
a plugin's own ``freshdb_server`` (``-p myplugin``, ``PYTEST_PLUGINS``, a root
conftest's ``pytest_plugins``) wins over freshdb's, as a conftest's always does.

SQLAlchemy and the server machinery are imported when a fixture first runs, never
when pytest loads the plugin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from freshdb.pytest_plugin.options import marker_overrides, marker_snapshot

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.orm import Session

    from freshdb import Snapshot
    from freshdb.database import Database
    from freshdb.pytest_plugin.servers import ServerRegistry
    from freshdb.server import DatabaseServer


@dataclasses.dataclass(frozen=True)
class RegistrySetup:
    """What the session's server registry is made from, known when pytest configures."""

    #: The run's ``--freshdb-*`` and ``freshdb_*`` values (see ``explicit_arguments``).
    arguments: Mapping[str, Any]
    rootdir: Path
    worker: str
    #: Under pytest-xdist: where to ask the controller for a shared throwaway server.
    broker_directory: Path | None


SETUP: pytest.StashKey[RegistrySetup] = pytest.StashKey()
REGISTRY: pytest.StashKey[ServerRegistry] = pytest.StashKey()
#: The databases a test was handed, so a failure can keep them.
HANDED_OUT: pytest.StashKey[list[tuple[Database, DatabaseServer]]] = pytest.StashKey()


def registry_of(config: pytest.Config) -> ServerRegistry:
    """The session's :class:`~freshdb.pytest_plugin.servers.ServerRegistry`.

    Made when a fixture first needs a server: a run that uses none never imports
    the server machinery.
    """
    servers = config.stash.get(REGISTRY, None)
    if servers is None:
        from freshdb.pytest_plugin.servers import BrokerClient, ServerRegistry, terminal_progress

        setup = config.stash[SETUP]
        broker = BrokerClient(setup.broker_directory) if setup.broker_directory else None
        servers = ServerRegistry(
            setup.arguments, setup.rootdir, setup.worker, broker, terminal_progress(config)
        )
        config.stash[REGISTRY] = servers
    return servers


def registry(request: pytest.FixtureRequest) -> ServerRegistry:
    """The session's server registry, for a fixture."""
    return registry_of(request.config)


def server_for_test(request: pytest.FixtureRequest) -> DatabaseServer:
    """The server a marker picks, else the ``freshdb_server`` fixture (maybe the user's)."""
    overrides = marker_overrides(request.node) if isinstance(request.node, pytest.Item) else {}
    if overrides:
        servers = registry(request)
        return servers.server(servers.request(overrides))
    server: DatabaseServer = request.getfixturevalue("freshdb_server")
    return server


def snapshot_for_test(request: pytest.FixtureRequest, server: DatabaseServer) -> Snapshot | None:
    """The snapshot ``@pytest.mark.freshdb(snapshot=...)`` asks for on ``server``, if any."""
    if not isinstance(request.node, pytest.Item):
        return None
    wanted = marker_snapshot(request.node)
    if wanted is None:
        return None
    return registry(request).snapshot(server, wanted)


def hand_out(
    request: pytest.FixtureRequest, server: DatabaseServer, source: Snapshot | None = None
) -> Iterator[Database]:
    """A fresh database for this test, released after it: a copy of ``server``'s
    template, or of ``source`` (one of its snapshots).

    Every copy a test gets goes through here, so ``--freshdb-keep-failed`` keeps it.
    """
    database = (source or server).database()
    handed_out = request.node.stash.setdefault(HANDED_OUT, [])
    handed_out.append((database, server))
    try:
        yield database
    finally:
        registry(request).note(server)
        database.release()


# -- the server -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def freshdb_server(request: pytest.FixtureRequest) -> DatabaseServer:
    """The session's started :class:`~freshdb.DatabaseServer` (configured by options).

    Override it (in a conftest, or in a plugin) for full control; ``freshdb`` and the
    fixtures built on it then use yours.
    """
    servers = registry(request)
    return servers.server(servers.request())


def _address_part(part: str, doc: str) -> Any:
    """A fixture giving one part of this test's server address (``freshdb_<part>``)."""

    def address_part(request: pytest.FixtureRequest) -> Any:
        return getattr(server_for_test(request).address, part)

    address_part.__doc__ = doc
    return pytest.fixture(name=f"freshdb_{part}")(address_part)


freshdb_host = _address_part(
    "host", "The host name or address of this test's server, as seen from the tests (a str)."
)
freshdb_port = _address_part("port", "The port of this test's server on ``freshdb_host`` (an int).")
freshdb_user = _address_part(
    "user", "The administrator user of this test's server (it owns the test's database)."
)
freshdb_password = _address_part("password", "The password of ``freshdb_user``.")


# -- a database per test ----------------------------------------------------------------
@pytest.fixture
def freshdb(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh copy of the template for this test, released (dropped) afterwards.

    With ``@pytest.mark.freshdb(snapshot=seed)``, a fresh copy of the template after
    ``seed`` ran (once per server, cached across sessions like the template).
    """
    server = server_for_test(request)
    yield from hand_out(request, server, snapshot_for_test(request, server))


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
    from sqlalchemy.pool import NullPool

    return freshdb.async_engine(poolclass=NullPool)


# -- savepoint mode ---------------------------------------------------------------------
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
    after it still start fresh. With ``@pytest.mark.freshdb(snapshot=seed)``, the
    worker's copy (one per snapshot) holds the seeded state.
    """
    from freshdb.pytest_plugin.savepoints import (
        ENDED_TRANSACTION_MESSAGE,
        Outcome,
        SavepointTest,
    )

    server = server_for_test(request)
    servers = registry(request)
    snapshot = snapshot_for_test(request, server)
    database = servers.shared_database(server, snapshot)
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
        servers.note(server)
        if outcome is not Outcome.ROLLED_BACK:
            servers.replace_shared_database(server, snapshot)
    if outcome is Outcome.COMMITTED:
        pytest.fail(ENDED_TRANSACTION_MESSAGE, pytrace=False)


@pytest.fixture
def freshdb_session(freshdb_transaction: Connection) -> Iterator[Session]:
    """Savepoint mode: a SQLAlchemy ``Session`` whose ``commit()`` stays inside the test.

    Bound with ``join_transaction_mode="create_savepoint"`` (SQLAlchemy's "joining a
    Session into an external transaction"): ``commit()`` and ``rollback()`` work on
    savepoints, and everything is rolled back after the test.
    """
    from sqlalchemy.orm import Session

    session = Session(bind=freshdb_transaction, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()


#: Every fixture freshdb provides, by name (what another plugin may override).
FIXTURES: dict[str, Any] = {
    "freshdb_server": freshdb_server,
    "freshdb_host": freshdb_host,
    "freshdb_port": freshdb_port,
    "freshdb_user": freshdb_user,
    "freshdb_password": freshdb_password,
    "freshdb": freshdb,
    "freshdb_url": freshdb_url,
    "freshdb_engine": freshdb_engine,
    "freshdb_connection": freshdb_connection,
    "freshdb_async_engine": freshdb_async_engine,
    "freshdb_transaction": freshdb_transaction,
    "freshdb_session": freshdb_session,
}
