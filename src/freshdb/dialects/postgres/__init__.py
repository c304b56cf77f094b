"""Postgres: server settings and every statement freshdb sends to a Postgres server.

A template is built under a build name and renamed into place when complete (the
commit point), sealed so no connection can block cloning it; a copy is ``CREATE
DATABASE … TEMPLATE``. Ownership and template use are advisory locks.

The modules: :mod:`.dialect` (the :class:`PostgresDialect`), :mod:`.direct_start`
(a container's first start without the official entrypoint's temporary server),
:mod:`.errors` (what a psycopg error means), :mod:`.locks` (advisory locks),
:mod:`.copier` (cloning, and the settings and grants a clone does not carry),
:mod:`.statements` (identifiers).
"""

from __future__ import annotations

from freshdb.dialects.postgres.dialect import PostgresDialect

__all__ = ["PostgresDialect"]
