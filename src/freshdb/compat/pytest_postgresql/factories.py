"""pytest-postgresql's fixture factories, backed by freshdb's server, template and pool.

``postgresql_proc`` and ``postgresql_noproc`` make a session fixture whose value
says where the server is (:class:`ServerDetails`); their ``load=`` list builds
freshdb's template, cached across sessions by a fingerprint of what it loads.
``postgresql`` makes a function fixture: a psycopg 3 connection to a fresh copy of
that template, taken from the pool (no ``CREATE DATABASE`` while the test waits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL, Connection

from freshdb.config import Settings
from freshdb.database import Database
from freshdb.errors import ConfigurationError
from freshdb.migrators.base import ComposedMigrator, Migrator, digest
from freshdb.pytest_plugin.fixtures import hand_out, registry
from freshdb.server import DatabaseServer

__all__ = [
    "ServerDetails",
    "postgresql",
    "postgresql_async",
    "postgresql_noproc",
    "postgresql_proc",
]

#: What ``load=`` takes, as in pytest-postgresql: a ``Path`` of a SQL file, an import
#: path of a loader function (``"package.module:function"``), or the function itself.
Load = Path | str | Callable[..., Any]

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
#: pytest-postgresql's options for what to load (registered by the plugin module).
LOAD_OPTION = "postgresql_load"
AUTOCOMMIT_OPTION = "postgresql_load_autocommit"


class ServerDetails:
    """What a ``postgresql_proc`` / ``postgresql_noproc`` fixture gives a test.

    The attributes pytest-postgresql's executors have (``host``, ``port``, ``user``,
    ``password``, ``dbname``, ``options``, ``template_dbname``,
    ``maintenance_dbname``), plus ``server``, the freshdb :class:`DatabaseServer`.

    ``dbname`` names the copy of the test that holds a ``postgresql`` connection
    from this fixture, as pytest-postgresql's one test database does; outside such
    a test it names the template, which accepts no connections.
    """

    def __init__(
        self,
        server: DatabaseServer,
        *,
        options: str,
        loads: Sequence[Load],
        settings: Mapping[str, Any],
        load_autocommit: bool,
    ) -> None:
        address = server.address
        #: The freshdb server behind this fixture.
        self.server = server
        self.host = address.host
        self.port = address.port
        self.user = address.user
        self.password = address.password
        #: libpq ``options`` every ``postgresql`` connection of this fixture uses.
        self.options = options
        #: The database that creating and dropping databases connects to.
        self.maintenance_dbname = address.admin_database
        # What postgresql_noproc(depends_on=...) builds on.
        self.loads: tuple[Load, ...] = tuple(loads)
        self.settings: dict[str, Any] = dict(settings)
        self.load_autocommit = load_autocommit
        self._current: list[str] = []

    def __repr__(self) -> str:  # never show the password
        where = f"{self.user}@{self.host}:{self.port}"
        return f"<ServerDetails {where} template {self.template_dbname}>"

    @property
    def template_dbname(self) -> str:
        """The template every test's copy is made from."""
        template = self.server.template
        assert template is not None  # the server is started before this object exists
        return template

    @property
    def dbname(self) -> str:
        """The running test's copy (see the class docstring), else the template."""
        return self._current[-1] if self._current else self.template_dbname

    @contextlib.contextmanager
    def holding(self, database: str) -> Iterator[None]:
        """While a test holds a connection to ``database``, ``dbname`` names it."""
        self._current.append(database)
        try:
            yield
        finally:
            self._current.remove(database)


# -- loading the template -----------------------------------------------------------
def _loader_function(load: str | Callable[..., Any]) -> Callable[..., Any]:
    """The function an import path names (``pkg.module:function`` or ``pkg.module.function``)."""
    if callable(load):
        return load
    module_name, _, attribute = load.rpartition(":")
    if not module_name:
        module_name, _, attribute = load.rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"load={load!r}: a string in load= is an import path of a loader function "
            "(package.module:function); for a SQL file pass a pathlib.Path"
        )
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"load={load!r}: cannot import the loader function ({exc}) — check the import "
            "path, and that its package is importable from the test run"
        ) from exc
    if not callable(function):
        raise ConfigurationError(f"load={load!r} names {type(function).__name__}, not a function")
    result: Callable[..., Any] = function
    return result


def _source_of(function: Callable[..., Any]) -> str:
    """The code a loader function's behaviour depends on: its whole module if possible."""
    target = inspect.unwrap(function)
    for subject in (inspect.getmodule(target), target):
        if subject is None:
            continue
        try:
            return inspect.getsource(subject)
        except (OSError, TypeError):
            continue
    raise ConfigurationError(
        f"cannot read the source of the loader {function!r} to fingerprint the template — "
        "load a function defined in a .py file (not a functools.partial or a builtin)"
    )


class _SqlFileLoad:
    """A ``Path`` in ``load=``: the file executed at once, as pytest-postgresql does."""

    def __init__(self, path: Path, autocommit: bool) -> None:
        self.path = path
        self.autocommit = autocommit
        self.description = f"load={path}"

    def fingerprint(self) -> str:
        try:
            content = self.path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"load=[Path({str(self.path)!r})]: cannot read the SQL file ({exc})"
            ) from exc
        return digest("pytest-postgresql-sql", str(self.autocommit), content)

    def migrate(self, connection: Connection) -> None:
        with _connect_like_a_loader(connection, self.autocommit) as loading:
            loading.execute(self.path.read_text())
            if not self.autocommit:
                loading.commit()


class _FunctionLoad:
    """A loader function in ``load=``: called with host, port, user, dbname, password."""

    def __init__(self, load: str | Callable[..., Any]) -> None:
        self.function = _loader_function(load)
        name = getattr(self.function, "__qualname__", repr(self.function))
        self.description = f"load={getattr(self.function, '__module__', '?')}.{name}"

    def fingerprint(self) -> str:
        return digest("pytest-postgresql-loader", self.description, _source_of(self.function))

    def migrate(self, connection: Connection) -> None:
        url = connection.engine.url
        self.function(
            host=url.host,
            port=url.port,
            user=url.username,
            dbname=url.database,
            password=url.password,
        )


def _connect_like_a_loader(connection: Connection, autocommit: bool) -> psycopg.Connection[Any]:
    url = connection.engine.url
    return psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=autocommit,
    )


def _migrator(loads: Sequence[Load], autocommit: bool) -> Migrator:
    steps: list[Migrator] = []
    for load in loads:
        if isinstance(load, Path):
            steps.append(_SqlFileLoad(load, autocommit))
        elif isinstance(load, str) or callable(load):
            steps.append(_FunctionLoad(load))
        else:
            raise ConfigurationError(
                f"load= takes Paths of SQL files, import paths of loader functions and "
                f"functions, got {load!r}"
            )
    return ComposedMigrator(steps)


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


def configured_loads(config: pytest.Config) -> tuple[list[Load], bool | None]:
    """pytest-postgresql's ``--postgresql-load`` / ``postgresql_load`` and
    ``--postgresql-load-autocommit`` / ``postgresql_load_autocommit``, when the
    compatibility plugin registered them: what factories without ``load=`` load.

    As in pytest-postgresql, a value ending in ``.sql`` is a SQL file (relative to
    the working directory, or in the ini file to the ini file's directory); any
    other is an import path.
    """
    values: list[Any] = []
    autocommit: bool | None = None
    try:
        values = list(config.getoption(LOAD_OPTION) or [])
        if not values and config.inipath is not None:
            # pathlist made every value a path next to the ini file: an import path
            # is given back as it was written.
            values = [
                path if str(path).endswith(".sql") else os.path.relpath(path, config.inipath.parent)
                for path in config.getini(LOAD_OPTION) or []
            ]
        autocommit = bool(config.getoption(AUTOCOMMIT_OPTION) or config.getini(AUTOCOMMIT_OPTION))
    except ValueError:  # the plugin is not loaded: the factories are used on their own
        pass
    loads: list[Load] = [Path(str(v)) if str(v).endswith(".sql") else str(v) for v in values]
    return loads, autocommit


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
        overrides["schema"] = _migrator(loads, load_autocommit)
    servers = registry(request)
    server = servers.server(servers.spec(overrides))
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
    url = database.url
    connection = psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=database.name,
        options=details.options,
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
            url = database.url
            connection = await psycopg.AsyncConnection.connect(
                host=url.host,
                port=url.port,
                user=url.username,
                password=url.password,
                dbname=database.name,
                options=details.options,
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
