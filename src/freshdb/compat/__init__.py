"""Fixtures shaped like other tools' fixtures, backed by freshdb.

Each module here lets a suite written for another plugin move onto freshdb by
changing an import, not its tests:

- :mod:`freshdb.compat.pytest_postgresql`: pytest-postgresql's ``postgresql_proc``,
  ``postgresql_noproc``, ``postgresql`` and ``postgresql_async`` fixtures and their
  ``factories``.
"""
