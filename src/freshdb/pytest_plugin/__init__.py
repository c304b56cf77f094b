"""The pytest plugin: a fresh database for every test, zero boilerplate.

Registered through the ``pytest11`` entry point, so installing freshdb is enough::

    def test_signup(freshdb_connection):
        freshdb_connection.execute(...)

Fixtures (:mod:`freshdb.pytest_plugin.fixtures`): ``freshdb_server`` (session),
``freshdb`` (a :class:`~freshdb.Database` per test), ``freshdb_url``,
``freshdb_engine``, ``freshdb_connection``, ``freshdb_async_engine``; the server's
parts ``freshdb_host``, ``freshdb_port``, ``freshdb_user`` and ``freshdb_password``;
and savepoint mode: ``freshdb_transaction`` and ``freshdb_session`` (one copy per
worker, each test rolled back).

Configuration, highest first: ``--freshdb-*`` options > ``freshdb_*`` ini options >
``FRESHDB_*`` environment variables > ``[tool.freshdb]`` in pyproject.toml > defaults.
``@pytest.mark.freshdb(engine="mariadb", ...)`` gives a test or module another server;
:func:`server_fixture` makes extra server fixtures. Snapshots (seeded states built once
and cached like the template): :func:`snapshot_fixture`, or
``@pytest.mark.freshdb(snapshot=seed)`` for the ``freshdb`` fixture and those built on it.
Defining ``freshdb_server`` (or any freshdb fixture) in a conftest or in a plugin
(``-p``, ``PYTEST_PLUGINS``, ``pytest_plugins``) overrides freshdb's.

The plugin is inert until a test asks for one of its fixtures: loading it imports
neither SQLAlchemy nor a driver nor Docker, and collecting tests and running tests
that use no freshdb fixture start nothing.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from freshdb.errors import FreshDBError
from freshdb.pytest_plugin import fixtures
from freshdb.pytest_plugin.fixtures import (
    HANDED_OUT,
    REGISTRY,
    SETUP,
    RegistrySetup,
    hand_out,
    registry,
    registry_of,
)
from freshdb.pytest_plugin.options import (
    SnapshotRequest,
    explicit_arguments_of,
    keep_failed,
    register_options,
    server_request,
)

if TYPE_CHECKING:
    from freshdb.database import Database
    from freshdb.pytest_plugin.servers import ThrowawayBroker
    from freshdb.server import DatabaseServer

__all__ = ["FixtureOverrideWarning", "database_fixture", "server_fixture", "snapshot_fixture"]

_BROKER: pytest.StashKey[ThrowawayBroker] = pytest.StashKey()
_WORKER_REPORTS = pytest.StashKey[list[dict[str, Any]]]()
_SERVER_REPORTS = pytest.StashKey[list[dict[str, Any]]]()
_KEEP_FAILED = pytest.StashKey[bool]()
# freshdb fixture name -> the plugins (other than freshdb) that define it.
_OVERRIDDEN = pytest.StashKey[dict[str, list[str]]]()
_BROKER_INPUT = "freshdb_broker"
_WORKER_OUTPUT = "freshdb_servers"
_FIXTURES_PLUGIN = "freshdb-fixtures"


class FixtureOverrideWarning(pytest.PytestWarning):
    """A plugin's override of a freshdb fixture that pytest does not use."""


# -- hooks ---------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--freshdb-*`` options and ``freshdb_*`` ini options."""
    # Imported here, not at the top: the plugin module stays a list of hooks.
    from freshdb.django import pytest_integration as django_integration

    register_options(parser)
    django_integration.register_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and prepare (but start nothing of) the session's servers."""
    from freshdb.django import pytest_integration as django_integration

    config.addinivalue_line(
        "markers",
        "freshdb(engine=None, snapshot=None, snapshot_key=None, **settings): give this "
        "test's freshdb fixtures a server with these settings (engine, image, mode, url, "
        "schema, pool_size, ...), and with snapshot=seed a copy of the template after seed "
        "ran (built once, cached)",
    )
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    broker_directory = (workerinput or {}).get(_BROKER_INPUT)
    config.stash[SETUP] = RegistrySetup(
        explicit_arguments_of(config),
        config.rootpath,
        worker=str((workerinput or {}).get("workerid", "main")),
        broker_directory=Path(broker_directory) if broker_directory else None,
    )
    config.stash[_KEEP_FAILED] = keep_failed(config)
    config.stash[_WORKER_REPORTS] = []
    _register_fixtures(config)
    django_integration.configure(config)


def _register_fixtures(config: pytest.Config) -> None:
    """Register freshdb's fixtures, except those another plugin defines.

    pytest prefers, among plugins, the fixture of the plugin registered last, and
    registers ``-p`` plugins before entry-point plugins such as freshdb: left in the
    entry-point module, freshdb's ``freshdb_server`` would silently beat a ``-p``
    plugin's. Registered now (after every plugin pytest loads before configuring),
    without the names others define, any plugin's fixture of the same name wins.
    A conftest's fixture wins over every plugin's anyway.
    """
    if config.pluginmanager.has_plugin(_FIXTURES_PLUGIN):
        return
    overridden = _defined_by(config, set(fixtures.FIXTURES), conftests=False)
    config.stash[_OVERRIDDEN] = overridden
    holder = types.ModuleType(fixtures.__name__, fixtures.__doc__)
    for name, definition in fixtures.FIXTURES.items():
        if name not in overridden:
            setattr(holder, name, definition)
    config.pluginmanager.register(holder, _FIXTURES_PLUGIN)


def _fixture_names(plugin: object) -> Iterator[str]:
    """The names of the fixtures ``plugin`` (a module or object) defines."""
    from _pytest.fixtures import getfixturemarker  # what pytest's own collection uses

    holder = plugin if isinstance(plugin, types.ModuleType) else type(plugin)
    for attribute in dir(holder):
        try:
            marker = getfixturemarker(getattr(holder, attribute, None))
        except Exception:  # an arbitrary descriptor; pytest skips those too
            continue
        if marker is not None:
            yield marker.name or attribute


def _defined_by(config: pytest.Config, names: set[str], *, conftests: bool) -> dict[str, list[str]]:
    """Which plugins define fixtures among ``names``: conftest files, or the others
    (freshdb itself left out)."""
    found: dict[str, list[str]] = {}
    for plugin_name, plugin in config.pluginmanager.list_name_plugin():
        if plugin is None or plugin_name is None:
            continue
        # pytest's own test: a conftest is registered under its path.
        if plugin_name.endswith("conftest.py") != conftests:
            continue
        if getattr(plugin, "__name__", None) == __name__:
            continue
        for name in _fixture_names(plugin):
            if name in names:
                found.setdefault(name, []).append(plugin_name)
    return found


def pytest_collection_finish(session: pytest.Session) -> None:
    """Say so when a conftest's fixture hides a plugin's override of a freshdb fixture."""
    overridden = session.config.stash.get(_OVERRIDDEN, {})
    if not overridden:
        return
    for name, conftests in _defined_by(session.config, set(overridden), conftests=True).items():
        plugins = ", ".join(repr(p) for p in overridden[name])
        for conftest in conftests:
            where = Path(conftest).parent
            warnings.warn(
                FixtureOverrideWarning(
                    f"freshdb: the {name} fixture of plugin {plugins} is not used by the "
                    f"tests under {where}: {conftest} defines {name} too, and pytest always "
                    f"prefers a conftest's fixture to a plugin's. Remove {name} from that "
                    f"conftest to use the plugin's, or define it only in the conftest."
                ),
                stacklevel=1,
            )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker where to ask for a shared throwaway server."""
    config: pytest.Config = node.config
    from freshdb.pytest_plugin.servers import ThrowawayBroker

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
    from freshdb.pytest_plugin import reporting

    try:
        setup = config.stash[SETUP]
        settings = server_request(setup.arguments, {}, setup.rootdir).settings
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
    from freshdb.pytest_plugin import reporting

    for database, server in item.stash.get(HANDED_OUT, []):
        if database.kept:
            continue
        database.keep()  # the pool renames it when the fixture releases it
        kept = reporting.kept_database(
            database, server.settings, registry_of(item.config).cli_defaults()
        )
        report.sections.append((reporting.KEPT_SECTION, kept.section()))
        report.user_properties.append((reporting.KEPT_PROPERTY, f"{kept.name} {kept.url}"))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop this process's servers; a worker sends its figures to the controller."""
    config = session.config
    registry = config.stash.get(REGISTRY, None)
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
    failures = [*stats.get("failed", []), *stats.get("error", [])]
    if not reports and not failures:
        return
    from freshdb.pytest_plugin import reporting

    kept = reporting.kept_from_reports(failures)
    if not reports and not kept:
        return
    terminalreporter.ensure_newline()
    terminalreporter.section("freshdb")
    for line in reporting.summary_lines(reports, kept, verbose=config.option.verbose > 0):
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Last resort for an interrupted session; on the controller, remove throwaways."""
    registry = config.stash.get(REGISTRY, None)
    if registry is not None:
        registry.close()
    broker = config.stash.get(_BROKER, None)
    if broker is not None:
        broker.close()


# -- for integrations -------------------------------------------------------------------
def session_server(config: pytest.Config, overrides: Mapping[str, Any]) -> DatabaseServer:
    """The session's started server for the run's settings with ``overrides``.

    For integrations (pytest-django's): the server is shared with the plugin's
    fixtures, one throwaway container serves every xdist worker, and the plugin
    stops it at the session's end.
    """
    servers = registry_of(config)
    return servers.server(servers.request(overrides))


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
        servers = registry(request)
        return servers.server(servers.request(settings))

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
        yield from hand_out(request, request.getfixturevalue(server))

    database.__doc__ = f"A fresh database from the {server!r} fixture."
    return pytest.fixture(name=name)(database)


def snapshot_fixture(
    seed: Any,
    *,
    name: str | None = None,
    key: str | None = None,
    scope: Literal["session", "package", "module", "class", "function"] = "function",
    server: str = "freshdb_server",
) -> Callable[..., Any]:
    """A fixture handing out fresh copies of a seeded state. In a conftest::

        def load_reference_data(connection):
            connection.execute(text("INSERT INTO countries ..."))

        reference_db = snapshot_fixture(load_reference_data)

    A test asking for ``reference_db`` gets a :class:`~freshdb.Database`: a fresh copy
    of the template after ``seed`` ran. The seed runs once per server — under
    pytest-xdist once for all workers, and not again in later sessions while neither
    the template nor the seed changes (it is cached on the server like the template).
    ``seed`` is anything ``schema=`` accepts: a callable taking a SQLAlchemy
    connection, a ``.sql`` file or directory (relative to rootdir), a migrator, or an
    import path ``package.module:attribute``. ``key`` names the snapshot besides the
    seed's fingerprint (for a seed whose result depends on something freshdb cannot
    see, such as a data file it reads). ``name`` is the fixture's name (default: the
    name it is assigned to); ``server`` the server fixture whose template is seeded.

    ``scope="function"`` (the default) gives each test a copy of its own, kept on
    failure with ``--freshdb-keep-failed``; a wider scope shares one copy among the
    tests of that scope (never kept: no single test owns it).
    """

    wanted = SnapshotRequest(seed, key)

    def database(request: pytest.FixtureRequest) -> Iterator[Database]:
        base: DatabaseServer = request.getfixturevalue(server)
        snapshot = registry(request).snapshot(base, wanted)
        yield from hand_out(request, base, snapshot)

    database.__doc__ = f"A fresh copy of the snapshot of {seed!r} (from freshdb.pytest_plugin)."
    return pytest.fixture(scope=scope, name=name)(database)
