"""SQLAlchemy ``MetaData``: the template is ``metadata.create_all()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from freshdb.migrators.base import digest

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection


class MetadataMigrator:
    """Creates every table, index, type and sequence of a ``MetaData``.

    The fingerprint is the DDL ``create_all`` emits, compiled for the server's
    dialect, so any change to a model that changes the schema makes a new template.
    """

    def __init__(self, metadata: MetaData, dialect: str | None = None) -> None:
        self.metadata = metadata
        self.dialect = dialect or "postgresql"
        self.description = f"SQLAlchemy MetaData ({len(metadata.tables)} tables)"

    def ddl(self) -> list[str]:
        """The DDL statements ``create_all`` would run, compiled for the dialect."""
        from sqlalchemy import create_mock_engine

        statements: list[str] = []

        def collect(sql: Any, *_: Any, **__: Any) -> None:
            statements.append(str(sql.compile(dialect=engine.dialect)).strip())

        engine = create_mock_engine(f"{self.dialect}://", collect)
        self.metadata.create_all(engine, checkfirst=False)
        return statements

    def fingerprint(self) -> str:
        return digest("metadata", self.dialect, *self.ddl())

    def migrate(self, connection: Connection) -> None:
        self.metadata.create_all(connection)
