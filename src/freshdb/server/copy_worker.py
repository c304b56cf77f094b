"""The :class:`~freshdb.pool.CopyWorker` that does the pool's work with a dialect's SQL."""

from __future__ import annotations

import threading
from typing import Any

from freshdb.database import EngineFactory
from freshdb.dialects.base import CopyRecipe, Dialect, ServerAddress
from freshdb.errors import FreshDBError


class SqlCopyWorker:
    """The pool's background work, done with a dialect's SQL on one connection."""

    def __init__(
        self,
        dialect: Dialect,
        address: ServerAddress,
        recipe: CopyRecipe,
        engines: EngineFactory,
    ) -> None:
        self.dialect = dialect
        self.address = address
        self.recipe = recipe
        self.engines = engines
        self.conn = dialect.connect(address)
        # close() (the pool's thread) and abort() (any thread) never overlap: a
        # closed connection's descriptor number may already belong to another file.
        self._closing_lock = threading.Lock()
        self._closed = False

    def clone(self, name: str) -> Any:
        self._translated(self.dialect.clone, self.conn, self.recipe, name)
        # The test's first connection, opened now while the copy waits in the pool:
        # connecting costs a new server process and a login, ~6 ms on its path.
        return self.engines.preconnect(self.dialect.warm_url(self.address, name))

    def discard(self, warm_connection: Any) -> None:
        self.engines.discard(warm_connection)

    def drop(self, name: str) -> None:
        self._translated(self.dialect.drop_database, self.conn, name)

    def rename(self, old: str, new: str) -> None:
        self._translated(self.dialect.rename_database, self.conn, old, new)

    def close(self) -> None:
        with self._closing_lock:
            self._closed = True
            self.conn.close()

    def abort(self) -> None:
        """Make the operation under way on the connection fail at once (any thread)."""
        with self._closing_lock:
            if not self._closed:
                self.dialect.abort(self.conn)

    def _translated(self, operation: Any, *args: Any) -> None:
        try:
            operation(*args)
        except FreshDBError:
            raise
        except Exception as exc:
            translated = self.dialect.translate_error(exc)
            if translated is not None:
                raise translated from exc
            raise
