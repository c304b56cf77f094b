"""The pytest-django integration's plugin: ``django_db_setup`` and per-test copies.

Registered by :func:`freshdb.django.pytest_integration.configure` when the ini
option ``freshdb_django = true`` is set; see that module for what it does.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from freshdb.django.databases import TestDatabases

#: Whether transactional tests get a copy of their own (``freshdb_django_transaction_copies``).
TRANSACTION_COPIES = pytest.StashKey[bool]()
_DATABASES = pytest.StashKey[TestDatabases]()
# pytest-django's function fixture that opens a test's database access.
_DB_HELPER = "_django_db_helper"
_TRANSACTIONAL_FIXTURES = ("transactional_db", "live_server")


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
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    verbose = request.config.option.verbose > 0

    def report(message: str) -> None:
        if reporter is not None and verbose:
            reporter.write_line(message)

    copies_per_test = request.config.stash.get(TRANSACTION_COPIES, False)
    databases = TestDatabases(
        dict.fromkeys(aliases, False),
        serialized_aliases=set(serialized),
        report=report,
        # Per-test copies are taken as tests go: keep some ready, as freshdb's pool does.
        ready_copies=None if copies_per_test else 0,
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


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """With transaction copies: a transactional test's database is a fresh copy."""
    config = request.config
    databases = config.stash.get(_DATABASES, None)
    if (
        fixturedef.argname != _DB_HELPER
        or databases is None
        or not config.stash.get(TRANSACTION_COPIES, False)
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
