"""MySQL and MariaDB: server flags and every statement freshdb sends to them.

Neither engine has ``CREATE DATABASE … TEMPLATE`` nor can rename a database, so the
same guarantees as on Postgres are kept differently:

- A template is built under its final name and is complete only once a marker
  table exists in it, made last by an atomic ``RENAME TABLE``. A template without
  the marker is a crashed build: the next builder drops it and starts over.
- A copy replays the template's DDL, captured once per session with ``SHOW
  CREATE`` read *with the template as the current database* (otherwise a copied
  view keeps reading the template's tables), then copies the rows
  (:mod:`.schema`, :mod:`.copier`).
- There are no shared named locks: a session marks a template in use by holding
  one of a fixed set of per-template "user slot" locks (:mod:`.locks`).

The modules: :mod:`.dialect` (the :class:`MySQLDialect`), :mod:`.flags` (server
flags per flavour and version), :mod:`.connection` (URLs, bounded connections),
:mod:`.errors` (what an error number means), :mod:`.locks`, :mod:`.schema` (a
database's objects as DDL), :mod:`.copier` (copying and renaming databases),
:mod:`.statements` (quoting, running scripts).
"""

from __future__ import annotations

from freshdb.dialects.mysql.dialect import MySQLDialect

__all__ = ["MySQLDialect"]
