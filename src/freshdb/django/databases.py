"""Django's test databases as copies of a cached template, for the runner and pytest-django.

For each ``DATABASES`` alias a test run uses, a freshdb server (started or reused as
freshdb's configuration says: a sticky container by default, ``FRESHDB_URL`` for an
existing server) holds a template built by :class:`~freshdb.migrators.DjangoMigrator`
and reused while the migrations are unchanged. The alias is pointed at a copy of it:
host, port, name and credentials all come from freshdb, so the project's own
``DATABASES`` credentials are never needed for tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from freshdb.config import ENGINE_ALIASES
from freshdb.database import Database
from freshdb.errors import ConfigurationError
from freshdb.migrators.django import (
    DjangoMigrator,
    check_served,
    connection_settings,
    setup_django,
)
from freshdb.server import DatabaseServer
from freshdb.template import build_progress_shown

if TYPE_CHECKING:
    from freshdb.django.fixture_snapshots import FixtureSnapshots

log = logging.getLogger("freshdb")

#: The engine freshdb runs for a Django vendor family unless configured otherwise.
DEFAULT_ENGINES = {"postgres": "postgres", "mysql": "mariadb"}


def engine_for(family: str, configured: str | None) -> str:
    """The freshdb engine for an alias: the configured one if it fits the family."""
    if configured:
        engine = ENGINE_ALIASES.get(configured.lower())
        if engine is not None and ("postgres" if engine == "postgres" else "mysql") == family:
            return engine
    return DEFAULT_ENGINES[family]


def server_arguments() -> dict[str, Any]:
    """freshdb settings from Django's ``FRESHDB`` setting (a dict), if the project has one.

    They win over ``FRESHDB_*`` variables and ``[tool.freshdb]``, like arguments to
    :class:`~freshdb.DatabaseServer`.
    """
    from django.conf import settings

    configured = getattr(settings, "FRESHDB", None) or {}
    if not isinstance(configured, Mapping):
        raise ConfigurationError(
            "settings.FRESHDB must be a dict of freshdb settings, e.g. {'mode': 'throwaway'}"
        )
    return dict(configured)


#: Finds or starts the server for an alias from :class:`~freshdb.DatabaseServer`'s
#: arguments. The default starts one of its own; pytest-django's integration asks the
#: pytest plugin's registry, which shares servers with its fixtures (and one
#: throwaway container among xdist workers) and stops them at the session's end.
ServerSource = Callable[[dict[str, Any]], DatabaseServer]


def start_server(arguments: dict[str, Any]) -> DatabaseServer:
    """A server of this run's own, started (the runner's :data:`ServerSource`)."""
    return DatabaseServer(**arguments).start()


@dataclasses.dataclass
class AliasDatabases:
    """One alias's server and the copies handed to this run (main first, then workers)."""

    alias: str
    server: DatabaseServer
    original: dict[str, Any]
    copies: list[Database] = dataclasses.field(default_factory=list)
    mirrors: list[str] = dataclasses.field(default_factory=list)
    #: Whether this run started the server, so stops it (else its source does).
    owned: bool = True


class TestDatabases:
    """The test databases of one run: set up, handed to workers, torn down.

    ``workers`` copies are made besides the main one when tests run in parallel
    processes; :meth:`worker_settings` says which copy each worker uses.
    ``ready_copies`` is the pool size: 0 when every copy is taken at the start (the
    runner), ``None`` for freshdb's configured size when tests take copies as they
    go (pytest-django's per-test copies). ``servers`` finds or starts each alias's
    server (default: one of this run's own); ``progress`` shows a template build
    from a long migration history as it goes (default: ``report``).
    ``fixture_snapshots`` serves test classes' ``fixtures`` from cached snapshots
    (:mod:`freshdb.django.fixture_snapshots`; default: as Django's settings say).
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        aliases: Mapping[str, Any] | None = None,
        *,
        workers: int = 0,
        keepdb: bool = False,
        serialized_aliases: set[str] | None = None,
        report: Callable[[str], None] | None = None,
        ready_copies: int | None = 0,
        servers: ServerSource | None = None,
        progress: Callable[[str], None] | None = None,
        fixture_snapshots: bool | None = None,
    ) -> None:
        self.aliases = aliases
        self.workers = workers if workers > 1 else 0
        self.keepdb = keepdb
        self.serialized_aliases = serialized_aliases
        self.report = report or (lambda message: log.info("%s", message))
        self.ready_copies = ready_copies
        self.servers = servers or start_server
        #: Where template builds show their progress, and reuses are announced.
        self.progress = progress or self.report
        self.by_alias: dict[str, AliasDatabases] = {}
        #: Serve test classes' ``fixtures`` from snapshots (None: as Django's settings
        #: or the environment say, see :mod:`freshdb.django.fixture_snapshots`).
        self.fixture_snapshots = fixture_snapshots
        #: The run's fixture snapshots, while they are served.
        self.snapshots: FixtureSnapshots | None = None
        self._serving = contextlib.ExitStack()

    # -- setting up ------------------------------------------------------------------
    def setup(self) -> None:
        """Start servers, build or reuse templates, point each alias at its copy."""
        setup_django()
        from django.db import connections
        from django.test.utils import get_unique_databases_and_mirrors

        test_databases, mirrored = get_unique_databases_and_mirrors(self.aliases)
        arguments = server_arguments()
        serialize = []
        try:
            for _name, aliases in test_databases.values():
                first, *others = aliases
                entry = self._start(first, arguments)
                self.by_alias[first] = entry
                connection = connections[first]
                self._point(first, entry.copies[0])
                for alias in others:
                    connections[alias].creation.set_as_test_mirror(connection.settings_dict)
                    entry.mirrors.append(alias)
                if self.serialized_aliases is None or first in self.serialized_aliases:
                    serialize.append(connection)
            for alias, mirror_of in mirrored.items():
                connections[alias].creation.set_as_test_mirror(connections[mirror_of].settings_dict)
            # As Django does: serialize once every alias points at its database, for
            # TransactionTestCase.serialized_rollback.
            for connection in serialize:
                connection._test_serialized_contents = connection.creation.serialize_db_to_string()
            self._serve_fixture_snapshots()
        except BaseException:
            self.teardown()
            raise

    def _serve_fixture_snapshots(self) -> None:
        from freshdb.django import fixture_snapshots

        wanted = self.fixture_snapshots
        if wanted is None:
            wanted = fixture_snapshots.enabled()
        if not wanted:
            return
        snapshots = fixture_snapshots.FixtureSnapshots(self, self.report)
        self._serving.enter_context(fixture_snapshots.serving(snapshots))
        self._serving.callback(snapshots.close)
        self.snapshots = snapshots

    def _start(self, alias: str, arguments: dict[str, Any]) -> AliasDatabases:
        from django.db import connections

        family = check_served(alias)
        engine = engine_for(family, arguments.get("engine") or os.environ.get("FRESHDB_ENGINE"))
        wanted = 1 + self.workers
        defaults = {} if self.ready_copies is None else {"pool_size": self.ready_copies}
        owned = self.servers is start_server
        with build_progress_shown(self.progress):
            server = self.servers(
                {
                    **defaults,
                    **arguments,
                    "engine": engine,
                    "schema": DjangoMigrator(databases=(alias,)),
                }
            )
        entry = AliasDatabases(alias, server, dict(connections[alias].settings_dict), owned=owned)
        try:
            entry.copies = [server.database() for _ in range(wanted)]
        except BaseException:
            for copy in entry.copies:
                copy.release()
            if owned:
                server.stop()
            raise
        stats = server.stats()
        how = (
            "reused"
            if stats["template_reused"]
            else f"built in {stats['template_build_seconds']:.2f} s"
        )
        self.report(
            f"freshdb: test database for alias {alias!r} is {entry.copies[0].name}, a copy of "
            f"template {stats['template']} ({how})"
            + (f"; {self.workers} more for parallel workers" if self.workers else "")
        )
        return entry

    @staticmethod
    def _point(alias: str, database: Database) -> None:
        """Point an alias (this process's connection and settings) at ``database``."""
        from django.conf import settings
        from django.db import connections

        values = connection_settings(alias, database.url)
        connection = connections[alias]
        connection.close()
        connection.settings_dict.update(values)
        if settings.DATABASES[alias] is not connection.settings_dict:
            settings.DATABASES[alias].update(values)

    def worker_settings(self) -> dict[str, list[dict[str, Any]]]:
        """For each alias (mirrors too), the connection settings of worker 1, 2, ..."""
        result: dict[str, list[dict[str, Any]]] = {}
        for alias, entry in self.by_alias.items():
            values = [connection_settings(alias, copy.url) for copy in entry.copies[1:]]
            for name in (alias, *entry.mirrors):
                result[name] = values
        return result

    @contextlib.contextmanager
    def fresh_copies(self, aliases: list[str] | None = None) -> Iterator[None]:
        """Point aliases at brand-new copies for a while (a test that commits)."""
        from django.db import connections

        taken: list[tuple[AliasDatabases, Database]] = []
        try:
            for alias, entry in self.by_alias.items():
                if aliases is not None and alias not in aliases:
                    continue
                copy = entry.server.database()
                taken.append((entry, copy))
                self._point(alias, copy)
            yield
        finally:
            for entry, copy in taken:
                connections[entry.alias].close()
                self._point(entry.alias, entry.copies[0])
                copy.release()

    # -- tearing down ----------------------------------------------------------------
    def teardown(self) -> None:
        """Release every copy (or keep it, with keepdb), stop servers, restore settings."""
        from django.conf import settings
        from django.db import connections

        errors: list[BaseException] = []
        self.snapshots = None
        try:
            self._serving.close()  # classes' snapshot copies first: they point elsewhere
        except BaseException as exc:
            errors.append(exc)
        # Connections left open by the code under test do not block the drop:
        # freshdb's DROP disconnects them (WITH (FORCE) / KILL).
        connections.close_all()
        for alias, entry in self.by_alias.items():
            try:
                for copy in entry.copies:
                    if self.keepdb:
                        copy.keep()
                    copy.release()
                if self.keepdb:
                    kept = ", ".join(c.kept_name for c in entry.copies)
                    self.report(
                        f"freshdb: kept the test database(s) of alias {alias!r} (--keepdb): "
                        f"{kept} at {entry.server.url.render_as_string(hide_password=True)}"
                        " — `freshdb prune --max-age 0` removes kept databases"
                    )
                if entry.owned:
                    entry.server.stop()
            except BaseException as exc:  # teardown goes on for the other aliases
                errors.append(exc)
            connection = connections[alias]
            connection.settings_dict.clear()
            connection.settings_dict.update(entry.original)
            if settings.DATABASES[alias] is not connection.settings_dict:
                settings.DATABASES[alias].clear()
                settings.DATABASES[alias].update(entry.original)
        self.by_alias.clear()
        if errors:
            raise errors[0]
