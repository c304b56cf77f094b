"""How a session's server is reached: the address of a database on it, with any driver.

Most drivers log in to any server freshdb runs. One does not: pg8000's SCRAM
library refuses a password stored with fewer iterations than RFC 7677 asks for, so
before the first address for such a driver is handed out, the server is made to
take its logins (see :meth:`~freshdb.dialects.base.Dialect.require_password_iterations`).
"""

from __future__ import annotations

import threading

from freshdb.dialects.base import Dialect, ServerAddress
from freshdb.drivers import ConnectionParts, Driver


class Logins:
    """The parts of a database's address on this session's server, and the drivers
    whose logins the server was made to take (once per driver and server)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._address: ServerAddress | None = None
        self._accepted: set[str] = set()
        self._lock = threading.Lock()

    def use(self, address: ServerAddress) -> None:
        """Reach the server at ``address`` from now on; it has accepted no driver yet
        (a new container stores a cheap password again)."""
        with self._lock:
            self._address = address
            self._accepted.clear()

    def parts(self, address: ServerAddress, database: str | None) -> ConnectionParts:
        """The address of ``database`` on the server, as the administrator."""
        return ConnectionParts(
            self.dialect.family,
            address.host,
            address.port,
            address.user,
            address.password,
            database,
            accept=self.accept,
        )

    def accept(self, driver: Driver) -> None:
        """Let the server take ``driver``'s logins (once per driver and server)."""
        if not driver.min_scram_iterations or driver.name in self._accepted:
            return
        with self._lock:
            address = self._address
            if driver.name in self._accepted or address is None:
                return
            conn = self.dialect.connect(address)
            try:
                self.dialect.require_password_iterations(conn, address, driver.min_scram_iterations)
            finally:
                conn.close()
            self._accepted.add(driver.name)
