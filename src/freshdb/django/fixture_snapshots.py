"""Django test classes' ``fixtures`` served from snapshots instead of ``loaddata``.

Opt-in: ``FRESHDB_DJANGO_FIXTURE_SNAPSHOTS = True`` in Django's settings (or the
environment variable of that name), or ``freshdb_django_fixture_snapshots = true``
for pytest-django. Django loads a test class's ``fixtures`` with ``loaddata``: once
per class for a ``TestCase`` (inside the class's transaction), and before *every*
test of a ``TransactionTestCase`` (after flushing the database the previous test
left). With snapshots on:

- the first class that asks for a list of fixtures has ``loaddata`` run once, on a
  copy of the template; the result is sealed as a snapshot named by the template,
  the fixture labels and the fixture files' contents, and cached on the server like
  the template (the next run reuses it without loading anything);
- a ``TransactionTestCase`` test runs on a fresh copy of that snapshot: its
  ``loaddata`` and the flush after it are skipped (the copy is dropped instead), and
  so is the ``serialized_rollback`` reload (the copy holds the migrated data anyway);
- a ``TestCase`` class runs on a fresh copy of the snapshot for the whole class, in
  Django's class transaction as usual: its ``loaddata`` is skipped.

A class is left to Django when it sets ``available_apps`` (Django then re-creates
content types for a subset of apps, which a copy of the template cannot mirror), when
one of its databases is not served by freshdb, or on a backend without savepoints
(``TestCase``). Under ``manage.py test --parallel``, each worker process joins the
server with a session of its own and serves its classes the same way.

Which snapshot a class's fixtures are, and how it is built, is the seed's
(:class:`~freshdb.django.fixture_seed.DjangoFixtures`); this module serves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from freshdb.django.fixture_seed import DjangoFixtures
from freshdb.errors import ConfigurationError
from freshdb.migrators.django import connection_settings

if TYPE_CHECKING:
    from freshdb import Snapshot
    from freshdb.database import Database
    from freshdb.django.databases import AliasDatabases, TestDatabases

#: Django setting and environment variable that turn fixture snapshots on.
SETTING = "FRESHDB_DJANGO_FIXTURE_SNAPSHOTS"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
#: The connection settings a copy changes (what is restored afterwards).
_POINTED_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


def enabled() -> bool:
    """Whether Django's settings (else the environment) turn fixture snapshots on."""
    from django.conf import settings

    value: Any = getattr(settings, SETTING, None)
    where = f"settings.{SETTING}"
    if value is None:
        value, where = os.environ.get(SETTING, ""), f"the environment variable {SETTING}"
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigurationError(f"{where} is {value!r}: set it to true or false")


@dataclasses.dataclass
class _Taken:
    """One alias of a test class pointed at a fresh copy of a snapshot."""

    entry: AliasDatabases
    copy: Database
    #: The alias's connection settings before, restored when the copy is given back.
    before: dict[str, Any]


class FixtureSnapshots:
    """The fixture snapshots of one run: built or found once, copies handed to classes.

    ``databases`` is the run's :class:`~freshdb.django.databases.TestDatabases`
    (each served alias's server and main copy).
    """

    def __init__(self, databases: TestDatabases, report: Callable[[str], None]) -> None:
        self.databases = databases
        self.report = report
        self._snapshots: dict[tuple[str, tuple[str, ...], bool], Snapshot] = {}
        self._taken: dict[type, list[_Taken]] = {}
        #: (alias, labels) whose fixtures the alias's current copy holds already.
        self._loaded: set[tuple[str, tuple[str, ...]]] = set()
        #: The test classes served so far (for the closing report).
        self.classes: set[str] = set()

    def serves(self, cls: Any) -> bool:
        """Whether ``cls``'s fixtures come from a snapshot (else Django loads them)."""
        if not cls.fixtures or cls.available_apps is not None:
            return False
        aliases = cls._databases_names(include_mirrors=False)
        return bool(aliases) and all(alias in self.databases.by_alias for alias in aliases)

    def snapshot(self, entry: AliasDatabases, labels: tuple[str, ...], reset: bool) -> Snapshot:
        """The snapshot of ``labels`` loaded into ``entry``'s template (built once)."""
        key = (entry.alias, labels, reset)
        found = self._snapshots.get(key)
        if found is None:
            seed = DjangoFixtures(entry.alias, labels, reset_sequences=reset)
            found = entry.server.snapshot(seed)
            self._snapshots[key] = found
            how = "reused" if found.reused else f"built in {found.build_seconds:.2f} s"
            self.report(
                f"freshdb: fixtures {', '.join(labels)} for alias {entry.alias!r}: snapshot "
                f"{found.name} ({how})"
            )
        return found

    def take(self, cls: Any) -> None:
        """Point each of ``cls``'s databases at a fresh copy of its fixtures' snapshot."""
        from django.db import connections

        labels = tuple(cls.fixtures)
        self.give_back(cls)  # a class set up again without its teardown (skipped tests)
        taken: list[_Taken] = []
        self._taken[cls] = taken
        try:
            for alias in cls._databases_names(include_mirrors=False):
                entry = self.databases.by_alias[alias]
                snapshot = self.snapshot(entry, labels, bool(cls.reset_sequences))
                copy = snapshot.database()
                settings_dict = connections[alias].settings_dict
                before = {key: settings_dict.get(key) for key in _POINTED_KEYS}
                taken.append(_Taken(entry, copy, before))
                self._point(alias, connection_settings(alias, copy.url))
                self._loaded.add((alias, labels))
        except BaseException:
            self.give_back(cls)
            raise
        self.classes.add(f"{cls.__module__}.{cls.__qualname__}")

    def give_back(self, cls: Any) -> bool:
        """Point ``cls``'s databases back where they were; drop its copies.

        False if ``cls`` holds no copies (its fixtures were Django's to load).
        """
        taken = self._taken.pop(cls, None)
        if taken is None:
            return False
        errors: list[BaseException] = []
        for item in reversed(taken):
            self._loaded.discard((item.entry.alias, tuple(cls.fixtures)))
            try:
                self._point(item.entry.alias, item.before)
            finally:
                try:
                    item.copy.release()
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]
        return True

    def holds(self, alias: str | None, labels: Sequence[str]) -> bool:
        """Whether ``alias``'s current copy already holds ``labels`` (once: a second
        ``loaddata`` into the same copy is Django's to run)."""
        key = (alias or "default", tuple(labels))
        if key in self._loaded:
            self._loaded.discard(key)
            return True
        return False

    @staticmethod
    def _point(alias: str, values: dict[str, Any]) -> None:
        """Point ``alias`` (and its test mirrors, which share its settings) elsewhere."""
        from django.conf import settings
        from django.db import connections

        connection = connections[alias]
        for other in connections:
            if connections[other].settings_dict is connection.settings_dict:
                connections[other].close()
        connection.settings_dict.update(values)
        if settings.DATABASES[alias] is not connection.settings_dict:
            settings.DATABASES[alias].update(values)

    def close(self) -> None:
        """Give back whatever a class still holds (a class whose teardown never ran)."""
        errors: list[BaseException] = []
        for cls in list(self._taken):
            try:
                self.give_back(cls)
            except BaseException as exc:
                errors.append(exc)
        if self._snapshots:
            built = sum(1 for s in self._snapshots.values() if not s.reused)
            self.report(
                f"freshdb: fixtures of {len(self.classes)} test class(es) came from "
                f"{len(self._snapshots)} snapshot(s) ({built} built, "
                f"{len(self._snapshots) - built} reused)"
            )
        if errors:
            raise errors[0]


# -- how Django's test classes are served ------------------------------------------------
# Django's test classes are process-wide: one run at a time serves them.
_install_lock = threading.Lock()
_installed = False
_active: FixtureSnapshots | None = None


def stop_in_this_process() -> None:
    """Leave every class's fixtures to Django here (a ``--parallel`` worker process,
    which inherits the parent's state but none of its pool threads)."""
    global _active
    _active = None


def worker_sources(snapshots: FixtureSnapshots | None) -> dict[str, dict[str, Any]]:
    """What a ``--parallel`` worker needs to serve fixture snapshots itself: for each
    served alias, its server's settings, the admin URL in place of the mode."""
    if snapshots is None:
        return {}
    sources = {}
    for alias, entry in snapshots.databases.by_alias.items():
        arguments = dataclasses.asdict(entry.server.settings)
        arguments.pop("schema", None)
        arguments.update(
            mode="external",
            url=entry.server.url.render_as_string(hide_password=False),
            pool_size=0,
        )
        sources[alias] = arguments
    return sources


def serve_in_worker(sources: dict[str, dict[str, Any]]) -> None:
    """Serve fixture snapshots in a ``--parallel`` worker process.

    The worker joins each alias's server with a session of its own (the parent's
    pools do not survive a fork); the template is found by its fingerprint, and each
    snapshot is built once by whichever process needs it first (the server's build
    lock), or found. The session ends when the worker process does.
    """
    global _active
    from multiprocessing import util

    from freshdb.django.databases import AliasDatabases, TestDatabases
    from freshdb.migrators.django import DjangoMigrator
    from freshdb.server import DatabaseServer

    install()
    databases = TestDatabases(report=lambda message: None)
    for alias, arguments in sources.items():
        server = DatabaseServer(schema=DjangoMigrator(databases=(alias,)), **arguments).start()
        # Run when the worker exits normally (multiprocessing skips atexit in workers);
        # a killed worker's copies are reaped as any dead owner's.
        util.Finalize(server, server.stop, exitpriority=10)
        databases.by_alias[alias] = AliasDatabases(alias, server, {}, owned=True)
    _active = FixtureSnapshots(databases, databases.report)


def _serving(cls: Any) -> FixtureSnapshots | None:
    snapshots = _active
    return snapshots if snapshots is not None and snapshots.serves(cls) else None


@contextlib.contextmanager
def serving(snapshots: FixtureSnapshots) -> Iterator[None]:
    """Serve Django test classes' fixtures from ``snapshots`` while the block runs."""
    global _active
    install()
    if _active is not None:
        raise ConfigurationError(
            "fixture snapshots are already being served in this process: one Django test "
            "run at a time"
        )
    _active = snapshots
    try:
        yield
    finally:
        _active = None


def install() -> None:
    """Wrap Django's test classes so that a :func:`serving` block can serve fixtures.

    ``TransactionTestCase._fixture_setup`` / ``_fixture_teardown`` and
    ``TestCase.setUpClass`` / ``tearDownClass`` are wrapped (a class of the project
    that overrides them and calls ``super()`` reaches the wrappers), and the
    ``call_command`` Django's test classes use skips a ``loaddata`` the copy holds
    already. Outside a :func:`serving` block, and for classes
    :meth:`FixtureSnapshots.serves` refuses, the wrappers run Django's own code.
    Installed once per process, and early for pytest (its unittest support looks up
    ``setUpClass`` when it collects a class, before any fixture runs).
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        _wrap_test_classes()
        _installed = True


def _wrap_test_classes() -> None:
    from django.test import TestCase, TransactionTestCase, testcases

    original_setup = TransactionTestCase.__dict__["_fixture_setup"]
    original_teardown = TransactionTestCase.__dict__["_fixture_teardown"]
    original_set_up_class = TestCase.__dict__["setUpClass"]
    original_tear_down_class = TestCase.__dict__["tearDownClass"]
    original_call_command = testcases.call_command

    def _fixture_setup(cls: Any) -> None:
        served = None if issubclass(cls, TestCase) else _serving(cls)
        if served is None:
            original_setup.__func__(cls)
            return
        # In place of Django's: reset_sequences and the fixtures are in the snapshot,
        # and the migrated data serialized_rollback would reload is in every copy.
        served.take(cls)

    def _fixture_teardown(self: Any) -> None:
        snapshots = _active
        served = snapshots is not None and not isinstance(self, TestCase)
        if served and snapshots is not None and snapshots.give_back(type(self)):
            return  # nothing to flush: the copy is dropped
        original_teardown(self)

    def set_up_class(cls: Any) -> None:
        served = _serving(cls)
        if served is None or not (
            cls._databases_support_transactions() and cls._databases_support_savepoints()
        ):
            original_set_up_class.__func__(cls)
            return
        served.take(cls)
        try:
            original_set_up_class.__func__(cls)
        except BaseException:
            served.give_back(cls)
            raise

    def tear_down_class(cls: Any) -> None:
        try:
            original_tear_down_class.__func__(cls)
        finally:
            snapshots = _active
            if snapshots is not None:
                snapshots.give_back(cls)

    def call_command(command_name: Any, *args: Any, **options: Any) -> Any:
        snapshots = _active
        if (
            snapshots is not None
            and command_name == "loaddata"
            and snapshots.holds(options.get("database"), args)
        ):
            return None
        return original_call_command(command_name, *args, **options)

    TransactionTestCase._fixture_setup = classmethod(_fixture_setup)
    TransactionTestCase._fixture_teardown = _fixture_teardown
    TestCase.setUpClass = classmethod(set_up_class)
    TestCase.tearDownClass = classmethod(tear_down_class)
    testcases.call_command = call_command
