"""pytest-django on freshdb: the session's test database is a copy of a cached template.

Enabled by the ini option ``freshdb_django = true``. freshdb then provides
pytest-django's ``django_db_setup``: each alias the collected tests use points at a
copy of a template built by ``migrate`` once and reused while the migrations are
unchanged (under pytest-xdist, each worker gets its own copy). The server comes
from the pytest plugin (its ``--freshdb-*`` options apply, and in throwaway mode one
container serves every xdist worker). While a template builds, the terminal shows
which migration of how many runs, and says when a template is reused. With
``freshdb_django_transaction_copies = true``, each test marked
``django_db(transaction=True)`` (or using ``transactional_db`` / ``live_server``)
also gets a fresh copy of its own, so it starts from the migrated state with the
rows of data migrations, whatever earlier tests committed, and the session copy is
never flushed under the tests that follow. With ``freshdb_django_fixture_snapshots =
true`` (or Django's setting ``FRESHDB_DJANGO_FIXTURE_SNAPSHOTS = True``), Django test
classes' ``fixtures`` are loaded once into a snapshot cached on the server, and each
``TestCase`` class or ``TransactionTestCase`` test runs on a fresh copy of it instead
of running ``loaddata`` (:mod:`freshdb.django.fixture_snapshots`).

``--reuse-db`` needs nothing from freshdb: every run starts from the cached
template anyway. ``--nomigrations`` builds the template with ``migrate
--run-syncdb`` from the models (a template of its own).
"""

from __future__ import annotations

import pytest

DJANGO_OPTION = "freshdb_django"
TRANSACTION_COPIES_OPTION = "freshdb_django_transaction_copies"
FIXTURE_SNAPSHOTS_OPTION = "freshdb_django_fixture_snapshots"
_PLUGIN_NAME = "freshdb-django"


def register_options(parser: pytest.Parser) -> None:
    """The ini options that turn the pytest-django integration on."""
    parser.addini(
        DJANGO_OPTION,
        "freshdb: provide pytest-django's django_db_setup (test databases are copies of a "
        "cached template)",
        type="bool",
        default=False,
    )
    parser.addini(
        TRANSACTION_COPIES_OPTION,
        "freshdb: give each django_db(transaction=True) test a fresh copy of its own",
        type="bool",
        default=False,
    )
    parser.addini(
        FIXTURE_SNAPSHOTS_OPTION,
        "freshdb: load Django test classes' fixtures once into a cached snapshot and run "
        "each class (TestCase) or test (TransactionTestCase) on a fresh copy of it",
        type="bool",
        default=False,
    )


def configure(config: pytest.Config) -> None:
    """Register the integration when ``freshdb_django = true`` (after pytest-django)."""
    if not config.getini(DJANGO_OPTION) or config.pluginmanager.has_plugin(_PLUGIN_NAME):
        return
    if not config.pluginmanager.has_plugin("django"):
        raise pytest.UsageError(
            f"{DJANGO_OPTION} = true needs pytest-django: pip install pytest-django"
        )
    from freshdb.django import pytest_fixtures

    copies = bool(config.getini(TRANSACTION_COPIES_OPTION))
    config.stash[pytest_fixtures.TRANSACTION_COPIES] = copies
    config.stash[pytest_fixtures.FIXTURE_SNAPSHOTS] = bool(config.getini(FIXTURE_SNAPSHOTS_OPTION))
    # Registered now, after every entry-point plugin: its django_db_setup wins.
    config.pluginmanager.register(pytest_fixtures, _PLUGIN_NAME)
    if copies:
        config.pluginmanager.register(
            pytest_fixtures.TransactionCopies(), f"{_PLUGIN_NAME}-transaction-copies"
        )
