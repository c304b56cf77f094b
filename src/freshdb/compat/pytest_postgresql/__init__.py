"""pytest-postgresql's fixtures, backed by freshdb: move a suite by changing an import.

A conftest that makes its fixtures with pytest-postgresql's factories changes one
line::

    from freshdb.compat.pytest_postgresql import factories   # was: from pytest_postgresql

A suite that uses the default fixtures (``postgresql``, ``postgresql_async``,
``postgresql_proc``, ``postgresql_noproc``) loads this module as a plugin instead,
in its top conftest::

    pytest_plugins = ["freshdb.compat.pytest_postgresql"]

(or ``-p freshdb.compat.pytest_postgresql``). ``postgresql`` is then a psycopg 3
connection to a fresh copy of freshdb's template, handed out from a pool;
``postgresql_proc`` and ``postgresql_noproc`` are :class:`ServerDetails`. See
``docs/migrate-from/pytest-postgresql.md`` for what maps onto what.
"""

from __future__ import annotations

import importlib.util

import pytest

from freshdb.compat.pytest_postgresql import factories
from freshdb.compat.pytest_postgresql.details import ServerDetails
from freshdb.compat.pytest_postgresql.loading import AUTOCOMMIT_OPTION, LOAD_OPTION

__all__ = ["ServerDetails", "factories"]


#: The name pytest-postgresql's own plugin is registered under.
PEER_PLUGIN = "pytest_postgresql"


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """pytest-postgresql's options for what the template loads (the others have no
    meaning here: freshdb's own ``--freshdb-*`` options configure the server)."""
    if pluginmanager.has_plugin(PEER_PLUGIN):
        return  # its options are there already; pytest_configure says what to do
    group = parser.getgroup("freshdb-pytest-postgresql", "freshdb: pytest-postgresql fixtures")
    help_load = (
        "what process fixtures without load= load into the template: a .sql file or an "
        "import path of a loader function (repeatable)"
    )
    group.addoption("--postgresql-load", action="append", dest=LOAD_OPTION, help=help_load)
    parser.addini(LOAD_OPTION, help_load, type="pathlist")
    help_autocommit = "load .sql files with autocommit on"
    group.addoption(
        "--postgresql-load-autocommit",
        action="store_true",
        dest=AUTOCOMMIT_OPTION,
        default=None,
        help=help_autocommit,
    )
    parser.addini(AUTOCOMMIT_OPTION, help_autocommit, type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run beside pytest-postgresql itself: whose fixture a test would get
    depends on the order the two plugins were loaded in."""
    if config.pluginmanager.has_plugin(PEER_PLUGIN):
        raise pytest.UsageError(
            "freshdb.compat.pytest_postgresql is loaded while pytest-postgresql is "
            "installed: both define postgresql, postgresql_proc and postgresql_noproc — "
            "uninstall pytest-postgresql (pip uninstall pytest-postgresql), or disable it "
            "with -p no:pytest_postgresql"
        )


#: freshdb's Postgres server, its template built from freshdb's configured schema.
postgresql_proc = factories.postgresql_proc()
#: The server freshdb's configuration names (``FRESHDB_URL``, else Docker).
postgresql_noproc = factories.postgresql_noproc()
#: A psycopg 3 connection to a fresh copy of ``postgresql_proc``'s template.
postgresql = factories.postgresql("postgresql_proc")

if importlib.util.find_spec("pytest_asyncio") is not None:
    #: The same for async tests (a pytest-asyncio fixture).
    postgresql_async = factories.postgresql_async("postgresql_proc")
