"""``TEST_RUNNER = "freshdb.django.TestRunner"``: Django's runner on cached templates.

What changes against :class:`django.test.runner.DiscoverRunner`:

- each alias's test database is a copy of a template freshdb built with ``migrate``
  once and reuses while the migrations are unchanged, instead of a database
  created and migrated on every run;
- ``--parallel N``: each worker process gets its own copy, made in the background
  by the server (``CREATE DATABASE … TEMPLATE`` on Postgres, freshdb's copy script
  on MySQL/MariaDB), instead of Django cloning the test database once per worker
  (``mysqldump | mysql`` on MySQL);
- ``--keepdb`` keeps the test databases after the run (renamed, listed at the end);
  there is nothing to keep *for* the next run, which starts from the template;
- copies are dropped in the background; connections the code under test left open
  are ended by the drop, so they never block teardown;
- with ``FRESHDB_DJANGO_FIXTURE_SNAPSHOTS = True`` (a Django setting, or the
  environment variable), test classes' ``fixtures`` are loaded once into a snapshot
  cached on the server, and each class (``TestCase``) or test
  (``TransactionTestCase``) runs on a fresh copy of it instead of running
  ``loaddata`` (see :mod:`freshdb.django.fixture_snapshots`), in ``--parallel``
  workers too.

Server settings come from freshdb's configuration (``FRESHDB_*`` variables,
``[tool.freshdb]``, or a ``FRESHDB = {...}`` dict in Django's settings): a sticky
container by default, ``FRESHDB_URL`` for an existing server.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.test import runner as django_runner
from django.test.runner import DiscoverRunner, ParallelTestSuite

from freshdb.django import fixture_snapshots
from freshdb.django.databases import TestDatabases

# Django's positional init_worker arguments: (counter, initial_settings,
# serialized_contents, process_setup, process_setup_args, ...).
_PROCESS_SETUP_ARGS = 4


def init_worker(*args: Any) -> None:
    """A parallel worker's start: Django's own, then this worker's freshdb copy."""
    django_runner._init_worker(*args)
    # A forked worker inherits the parent's snapshot pools but not their threads.
    fixture_snapshots.stop_in_this_process()
    worker_id: int = django_runner._worker_id
    setup_args: tuple[Any, ...] = (
        args[_PROCESS_SETUP_ARGS] if len(args) > _PROCESS_SETUP_ARGS else ()
    )
    worker_settings: dict[str, list[dict[str, Any]]] = setup_args[0] if setup_args else {}
    for alias, per_worker in worker_settings.items():
        connection = connections[alias]
        connection.close()
        connection.settings_dict.update(per_worker[worker_id - 1])
    snapshot_sources: dict[str, dict[str, Any]] = setup_args[1] if len(setup_args) > 1 else {}
    if snapshot_sources:
        fixture_snapshots.serve_in_worker(snapshot_sources)


class FreshParallelTestSuite(ParallelTestSuite):  # type: ignore[misc]
    """Django's parallel suite, each worker on its own copy of the template."""

    init_worker = init_worker


class TestRunner(DiscoverRunner):  # type: ignore[misc]
    """Django's test runner with test databases from a freshdb server.

    Aliases with a Postgres or MySQL/MariaDB backend are served by freshdb; any
    other backend (sqlite, oracle) raises a :class:`~freshdb.errors.FreshDBError`.
    """

    __test__ = False
    parallel_test_suite = FreshParallelTestSuite

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._databases: TestDatabases | None = None

    def setup_databases(self, **kwargs: Any) -> TestDatabases:
        """Point every alias the tests use at a fresh copy (one per parallel worker)."""
        databases = TestDatabases(
            kwargs.get("aliases"),
            workers=self.parallel,
            keepdb=self.keepdb,
            serialized_aliases=kwargs.get("serialized_aliases"),
            report=self.log,
        )
        with self.time_keeper.timed("  freshdb copies"):
            databases.setup()
        self._databases = databases
        return databases

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        """Run the suite; a parallel one learns which copy each worker uses."""
        if isinstance(suite, FreshParallelTestSuite) and self._databases is not None:
            suite.process_setup_args = (
                self._databases.worker_settings(),
                fixture_snapshots.worker_sources(self._databases.snapshots),
            )
        return super().run_suite(suite, **kwargs)

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        """Give every copy back (kept with ``--keepdb``); restore ``DATABASES``."""
        if isinstance(old_config, TestDatabases):
            old_config.teardown()
        self._databases = None
