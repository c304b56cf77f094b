"""pytest-postgresql's fixtures, backed by freshdb: move a suite by changing an import.

A conftest that makes its fixtures with pytest-postgresql's factories changes one
line::

    from freshdb.compat.pytest_postgresql import factories   # was: from pytest_postgresql

A suite that uses the default fixtures (``postgresql``, ``postgresql_proc``,
``postgresql_noproc``) loads this module as a plugin instead, in its top conftest::

    pytest_plugins = ["freshdb.compat.pytest_postgresql"]

(or ``-p freshdb.compat.pytest_postgresql``). ``postgresql`` is then a psycopg 3
connection to a fresh copy of freshdb's template, handed out from a pool;
``postgresql_proc`` and ``postgresql_noproc`` are :class:`ServerDetails`. See
``docs/migrate-from/pytest-postgresql.md`` for what maps onto what.
"""

from __future__ import annotations

from freshdb.compat.pytest_postgresql import factories
from freshdb.compat.pytest_postgresql.factories import ServerDetails

__all__ = ["ServerDetails", "factories"]

#: freshdb's Postgres server, its template built from freshdb's configured schema.
postgresql_proc = factories.postgresql_proc()
#: The server freshdb's configuration names (``FRESHDB_URL``, else Docker).
postgresql_noproc = factories.postgresql_noproc()
#: A psycopg 3 connection to a fresh copy of ``postgresql_proc``'s template.
postgresql = factories.postgresql("postgresql_proc")
