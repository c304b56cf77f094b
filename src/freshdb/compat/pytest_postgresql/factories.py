"""pytest-postgresql's fixture factories, backed by freshdb's server, template and pool.

``postgresql_proc`` and ``postgresql_noproc`` make a session fixture whose value
says where the server is (:class:`ServerDetails`); their ``load=`` list builds
freshdb's template, cached across sessions by a fingerprint of what it loads.
``postgresql`` makes a function fixture: a psycopg 3 connection to a fresh copy of
that template, taken from the pool (no ``CREATE DATABASE`` while the test waits).

What ``load=`` loads is :mod:`~freshdb.compat.pytest_postgresql.loading`'s; the
process fixtures' value is :mod:`~freshdb.compat.pytest_postgresql.details`'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from freshdb.compat.pytest_postgresql.details import ServerDetails
from freshdb.compat.pytest_postgresql.loading import (
    Load,
    configured_loads,
    load_migrator,
    psycopg_arguments,
)
from freshdb.config import Settings
from freshdb.database import Database
from freshdb.errors import ConfigurationError
from freshdb.pytest_plugin.fixtures import hand_out, registry

__all__ = [
    "ServerDetails",
    "postgresql",
    "postgresql_async",
    "postgresql_noproc",
    "postgresql_proc",
]

# pytest-postgresql's arguments about running its own server process, and what
# freshdb, which runs the server in Docker, says instead.
_PROCESS_ONLY = {
    "executable": "there is no pg_ctl to find: freshdb runs Postgres in Docker",
    "startparams": "there is no pg_ctl to start: freshdb runs Postgres in Docker",
    "unixsocketdir": "freshdb's server is reached over TCP, not a unix socket",
    "postgres_options": "freshdb starts the server with its own settings",
}
_SERVER_CHOSEN = (
    "freshdb's server chooses its own host, port, user and password — remove {name}= "
    "and read them from the process fixture (postgresql_proc.host, .port, .user, "
    ".password) or from postgresql.info"
)
_SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(Settings))
# Settings the factories decide themselves: the engine, and the schema (from load=).
_RESERVED_SETTINGS = frozenset({"engine", "schema"})


# -- checking the factories' arguments ------------------------------------------------
def _check_arguments(factory: str, given: Mapping[str, Any]) -> None:
    """Only ``None`` (and pytest-postgresql's ``port=-1``, "the configured port") is
    accepted for arguments freshdb cannot honour."""
    for name, value in given.items():
        if value is None or (name == "port" and value == -1):
            continue
        why = _PROCESS_ONLY.get(name) or _SERVER_CHOSEN.format(name=name)
        raise ConfigurationError(f"{factory}({name}={value!r}): {why}")


def _check_settings(factory: str, settings: Mapping[str, Any]) -> None:
    unknown = set(settings) - _SETTING_NAMES
    reserved = set(settings) & _RESERVED_SETTINGS
    if unknown:
        raise ConfigurationError(
            f"{factory}() got unknown argument(s) {', '.join(sorted(unknown))} — besides "
            "pytest-postgresql's arguments it takes freshdb settings: "
            f"{', '.join(sorted(_SETTING_NAMES - _RESERVED_SETTINGS))}"
        )
    if reserved:
        raise ConfigurationError(
            f"{factory}() decides {', '.join(sorted(reserved))} itself: use load= for the "
            "template's contents (the engine is always Postgres)"
        )


def _start(
    request: pytest.FixtureRequest,
    *,
    loads: Sequence[Load],
    settings: Mapping[str, Any],
    options: str,
    load_autocommit: bool,
) -> ServerDetails:
    overrides: dict[str, Any] = {"engine": "postgres", **settings}
    if loads:
        overrides["schema"] = load_migrator(loads, load_autocommit)
    servers = registry(request)
    server = servers.server(servers.request(overrides))
    return ServerDetails(
        server,
        options=options,
        loads=loads,
        settings=settings,
        load_autocommit=load_autocommit,
    )


# -- the factories ---------------------------------------------------------------------
def postgresql_proc(
    executable: str | None = None,
    host: str | None = None,
    port: Any = -1,
    user: str | None = None,
    password: str | None = None,
    dbname: str | None = None,
    *,
    options: str = "",
    startparams: str | None = None,
    unixsocketdir: str | None = None,
    postgres_options: str | None = None,
    load: Sequence[Load] | None = None,
    load_autocommit: bool | None = None,
    **settings: Any,
) -> Callable[..., ServerDetails]:
    """A session fixture: freshdb's Postgres server, its template built from ``load``.

    ``load`` is pytest-postgresql's: ``Path``\\ s of SQL files (each executed at
    once), import paths of loader functions and the functions themselves (called
    with ``host``, ``port``, ``user``, ``dbname`` and ``password`` of the template
    being built). Without ``load`` the template is freshdb's configured schema.

    ``options`` are libpq options for every ``postgresql`` connection. Other keyword
    arguments are freshdb settings (``image=``, ``pool_size=``, ...). The arguments
    about running a server process, and a fixed host, port, user, password or test
    database name, raise a :class:`~freshdb.ConfigurationError` saying why.
    """
    _check_arguments(
        "postgresql_proc",
        {
            "executable": executable,
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "dbname": dbname,
            "startparams": startparams,
            "unixsocketdir": unixsocketdir,
            "postgres_options": postgres_options,
        },
    )
    _check_settings("postgresql_proc", settings)
    loads = list(load or [])

    @pytest.fixture(scope="session")
    def postgresql_proc_fixture(request: pytest.FixtureRequest) -> ServerDetails:
        configured, configured_autocommit = configured_loads(request.config)
        autocommit = configured_autocommit if load_autocommit is None else load_autocommit
        return _start(
            request,
            loads=loads or configured,
            settings=settings,
            options=options,
            load_autocommit=bool(autocommit),
        )

    postgresql_proc_fixture.__doc__ = "freshdb's Postgres server (pytest-postgresql's proc)."
    return postgresql_proc_fixture


def postgresql_noproc(
    host: str | None = None,
    port: str | int | None = None,
    user: str | None = None,
    password: str | None = None,
    dbname: str | None = None,
    *,
    maintenance_dbname: str | None = None,
    options: str = "",
    load: Sequence[Load] | None = None,
    load_autocommit: bool | None = None,
    depends_on: str | None = None,
    **settings: Any,
) -> Callable[..., ServerDetails]:
    """A session fixture on a server that runs already, or on freshdb's own.

    With ``host`` or ``port``, freshdb uses that server (its external mode: it
    creates and drops only its own databases there), logging in as ``user``
    (``postgres``) with ``password`` to ``maintenance_dbname`` (``postgres``).
    Without them, the server is the one freshdb's configuration names: ``FRESHDB_URL``
    (a CI service container), else a Docker container.

    ``depends_on`` names another process fixture whose template this one builds on:
    its loads first, then this one's ``load``, in a template of its own.
    """
    _check_arguments("postgresql_noproc", {"dbname": dbname})
    _check_settings("postgresql_noproc", settings)
    own_loads = list(load or [])
    external: dict[str, Any] = {}
    if host is not None or port is not None:
        if "url" in settings or "mode" in settings:
            raise ConfigurationError(
                "postgresql_noproc() got host/port and url= or mode= — give the server one way"
            )
        external["url"] = URL.create(
            "postgresql+psycopg",
            username=user or "postgres",
            password=password or None,
            host=host or "127.0.0.1",
            port=int(port or 5432),
            database=maintenance_dbname or "postgres",
        ).render_as_string(hide_password=False)
        # Explicitly: a sticky or throwaway mode from the run's options would
        # otherwise win over the URL.
        external["mode"] = "external"
    elif user is not None or password is not None or maintenance_dbname is not None:
        raise ConfigurationError(
            "postgresql_noproc(user=/password=/maintenance_dbname=) describe a server that "
            "runs already: give its host= or port= too, or leave them out to use freshdb's "
            "own server"
        )

    @pytest.fixture(scope="session")
    def postgresql_noproc_fixture(request: pytest.FixtureRequest) -> ServerDetails:
        loads: list[Load] = []
        merged: dict[str, Any] = {}
        configured, configured_autocommit = configured_loads(request.config)
        autocommit = bool(configured_autocommit if load_autocommit is None else load_autocommit)
        if depends_on:
            base = request.getfixturevalue(depends_on)
            if not isinstance(base, ServerDetails):
                raise ConfigurationError(
                    f"postgresql_noproc(depends_on={depends_on!r}): that fixture is not a "
                    "process fixture of freshdb.compat.pytest_postgresql"
                )
            loads.extend(base.loads)
            merged.update(base.settings)
            if load_autocommit is None:
                autocommit = base.load_autocommit
        # The configured loads are the base's business, not each layer's again.
        loads.extend(own_loads or ([] if depends_on else configured))
        merged.update(settings)
        merged.update(external)
        return _start(
            request,
            loads=loads,
            settings=merged,
            options=options,
            load_autocommit=autocommit,
        )

    postgresql_noproc_fixture.__doc__ = "A server that runs already (pytest-postgresql's noproc)."
    return postgresql_noproc_fixture


def postgresql(
    process_fixture_name: str,
    dbname: str | None = None,
    isolation_level: psycopg.IsolationLevel | None = None,
) -> Callable[..., Iterator[psycopg.Connection[Any]]]:
    """A function fixture: a psycopg 3 connection to a fresh copy of the template.

    The copy comes from the pool of the process fixture named
    ``process_fixture_name``; it is closed and the copy dropped (in the background)
    after the test, or kept with ``--freshdb-keep-failed`` when the test fails.
    ``isolation_level`` is set on the connection, as pytest-postgresql does.
    """
    if dbname is not None:
        raise ConfigurationError(
            f"postgresql({process_fixture_name!r}, dbname={dbname!r}): freshdb names each "
            "test's copy itself — remove dbname= and read the name from postgresql.info.dbname"
        )

    @pytest.fixture
    def postgresql_fixture(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
        details = _details(request, process_fixture_name, "postgresql")
        for database in hand_out(request, details.server):
            yield from _connected(database, details, isolation_level)

    postgresql_fixture.__doc__ = "A psycopg connection to a fresh copy (pytest-postgresql's)."
    return postgresql_fixture


def _connected(
    database: Database,
    details: ServerDetails,
    isolation_level: psycopg.IsolationLevel | None,
) -> Iterator[psycopg.Connection[Any]]:
    connection = psycopg.connect(
        **psycopg_arguments(database.url, database.name, options=details.options)
    )
    try:
        if isolation_level is not None:
            connection.isolation_level = isolation_level
        with details.holding(database.name):
            yield connection
    finally:
        connection.close()


def postgresql_async(
    process_fixture_name: str,
    dbname: str | None = None,
    isolation_level: psycopg.IsolationLevel | None = None,
) -> Callable[..., AsyncIterator[psycopg.AsyncConnection[Any]]]:
    """:func:`postgresql` for async tests: a ``psycopg.AsyncConnection`` to a fresh copy.

    A pytest-asyncio fixture, as pytest-postgresql's is (``pip install
    pytest-asyncio``; mark the tests ``@pytest.mark.asyncio``).
    """
    if dbname is not None:
        raise ConfigurationError(
            f"postgresql_async({process_fixture_name!r}, dbname={dbname!r}): freshdb names "
            "each test's copy itself — remove dbname= and read the name from "
            "postgresql_async.info.dbname"
        )
    try:
        import pytest_asyncio
    except ImportError:
        raise ConfigurationError(
            "postgresql_async fixtures are pytest-asyncio fixtures: pip install pytest-asyncio"
        ) from None

    @pytest_asyncio.fixture
    async def postgresql_async_fixture(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        details = _details(request, process_fixture_name, "postgresql_async")
        async with details.server.adatabase() as database:
            connection = await psycopg.AsyncConnection.connect(
                **psycopg_arguments(database.url, database.name, options=details.options)
            )
            try:
                if isolation_level is not None:
                    await connection.set_isolation_level(isolation_level)
                with details.holding(database.name):
                    yield connection
            finally:
                await connection.close()

    postgresql_async_fixture.__doc__ = "An async psycopg connection to a fresh copy."
    result: Callable[..., AsyncIterator[psycopg.AsyncConnection[Any]]] = postgresql_async_fixture
    return result


def _details(request: pytest.FixtureRequest, name: str, factory: str) -> ServerDetails:
    details = request.getfixturevalue(name)
    if not isinstance(details, ServerDetails):
        raise ConfigurationError(
            f"{factory}({name!r}): that fixture is not a process fixture of "
            "freshdb.compat.pytest_postgresql — make it with factories.postgresql_proc() "
            "or factories.postgresql_noproc()"
        )
    return details
