"""The pytest-django integration's plugin: ``django_db_setup`` and per-test copies.

Registered by :func:`freshdb.django.pytest_integration.configure` when the ini
option ``freshdb_django = true`` is set; see that module for what it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from freshdb.django.databases import TestDatabases
from freshdb.server import DatabaseServer

#: Whether transactional tests get a copy of their own (``freshdb_django_transaction_copies``).
TRANSACTION_COPIES = pytest.StashKey[bool]()
#: Whether test classes' fixtures come from snapshots (``freshdb_django_fixture_snapshots``).
FIXTURE_SNAPSHOTS = pytest.StashKey[bool]()
_DATABASES = pytest.StashKey[TestDatabases]()
# pytest-django's function fixture that opens a test's database access.
_DB_HELPER = "_django_db_helper"
_TRANSACTIONAL_FIXTURES = ("transactional_db", "live_server")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Wrap Django's test classes before pytest collects them (see
    :func:`freshdb.django.fixture_snapshots.install`): inert until ``django_db_setup``
    serves fixture snapshots, which Django's settings may turn on too."""
    from freshdb.django import fixture_snapshots

    fixture_snapshots.install()


def _is_transactional(item: Any) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker is not None and (marker.kwargs.get("transaction") or marker.args[:1] == (True,)):
        return True
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in _TRANSACTIONAL_FIXTURES)


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_use_migrations: bool,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """The session's test databases: copies of cached freshdb templates (freshdb_django)."""
    from pytest_django import fixtures as django_fixtures

    if not django_db_use_migrations:
        django_fixtures._disable_migrations()
    aliases, serialized = django_fixtures._get_databases_for_setup(request.session.items)
    config = request.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    verbose = config.option.verbose > 0

    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(message: str) -> None:
        if reporter is None:
            return
        # Session fixtures set up inside a test's captured output: write past it.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(message)

    def report(message: str) -> None:
        if verbose:
            show(message)

    def session_server(arguments: dict[str, Any]) -> DatabaseServer:
        # The plugin's registry: shared with its fixtures, stopped at the session's
        # end, and under xdist one throwaway container for all workers.
        from freshdb.pytest_plugin import session_server

        return session_server(config, arguments)

    copies_per_test = config.stash.get(TRANSACTION_COPIES, False)
    databases = TestDatabases(
        dict.fromkeys(aliases, False),
        serialized_aliases=set(serialized),
        report=report,
        progress=show,
        # Per-test copies are taken as tests go: keep some ready, as freshdb's pool does.
        ready_copies=None if copies_per_test else 0,
        servers=session_server,
        # The ini option turns them on; else Django's setting (or the environment) decides.
        fixture_snapshots=True if config.stash.get(FIXTURE_SNAPSHOTS, False) else None,
    )
    with django_db_blocker.unblock():
        databases.setup()
    request.config.stash[_DATABASES] = databases
    try:
        yield
    finally:
        del request.config.stash[_DATABASES]
        with django_db_blocker.unblock():
            databases.teardown()


class TransactionCopies:
    """The hook that gives a transactional test a copy of its own.

    Registered only with ``freshdb_django_transaction_copies = true``: it wraps the
    setup of every fixture of every test, and a plain integration has nothing to do
    there.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        """A transactional test's database is a fresh copy."""
        databases = request.config.stash.get(_DATABASES, None)
        if (
            fixturedef.argname != _DB_HELPER
            or databases is None
            or not _is_transactional(request.node)
        ):
            return (yield)
        # django_db_setup (a dependency) is up by now; this test's database access
        # opens next, on a copy of its own. Finalizers run last-in first-out: the copy
        # is released after pytest-django's own teardown of the test.
        switch = databases.fresh_copies()
        blocker = request.getfixturevalue("django_db_blocker")
        with blocker.unblock():
            switch.__enter__()

        def give_back() -> None:
            with blocker.unblock():
                switch.__exit__(None, None, None)

        fixturedef.addfinalizer(give_back)
        return (yield)
