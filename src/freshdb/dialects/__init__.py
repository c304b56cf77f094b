"""The engines' SQL dialects: one module per engine family."""

from __future__ import annotations

from freshdb.dialects.base import ContainerSpec, CopyRecipe, Dialect, ServerAddress
from freshdb.errors import ConfigurationError

__all__ = ["ContainerSpec", "CopyRecipe", "Dialect", "ServerAddress", "dialect_for"]


def dialect_for(engine: str) -> Dialect:
    """The dialect serving an engine name ("postgres", "mysql", "mariadb")."""
    if engine == "postgres":
        from freshdb.dialects.postgres import PostgresDialect

        return PostgresDialect()
    if engine in ("mysql", "mariadb"):
        try:
            from freshdb.dialects.mysql import MySQLDialect
        except ImportError as exc:
            raise ConfigurationError(
                f"the {engine} engine needs the MySQL driver: pip install 'freshdb[mysql]' ({exc})"
            ) from exc
        return MySQLDialect()
    raise ConfigurationError(
        f"unknown engine {engine!r}: freshdb serves 'postgres', 'mysql' and 'mariadb'"
    )
