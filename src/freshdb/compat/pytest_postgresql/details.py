"""What a ``postgresql_proc`` / ``postgresql_noproc`` fixture gives a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from freshdb.compat.pytest_postgresql.loading import Load
from freshdb.server import DatabaseServer


class ServerDetails:
    """What a ``postgresql_proc`` / ``postgresql_noproc`` fixture gives a test.

    The attributes pytest-postgresql's executors have (``host``, ``port``, ``user``,
    ``password``, ``dbname``, ``options``, ``template_dbname``,
    ``maintenance_dbname``), plus ``server``, the freshdb :class:`DatabaseServer`.

    ``dbname`` names the copy of the test that holds a ``postgresql`` connection
    from this fixture, as pytest-postgresql's one test database does; outside such
    a test it names the template, which accepts no connections.
    """

    def __init__(
        self,
        server: DatabaseServer,
        *,
        options: str,
        loads: Sequence[Load],
        settings: Mapping[str, Any],
        load_autocommit: bool,
    ) -> None:
        address = server.address
        #: The freshdb server behind this fixture.
        self.server = server
        self.host = address.host
        self.port = address.port
        self.user = address.user
        self.password = address.password
        #: libpq ``options`` every ``postgresql`` connection of this fixture uses.
        self.options = options
        #: The database that creating and dropping databases connects to.
        self.maintenance_dbname = address.admin_database
        # What postgresql_noproc(depends_on=...) builds on.
        self.loads: tuple[Load, ...] = tuple(loads)
        self.settings: dict[str, Any] = dict(settings)
        self.load_autocommit = load_autocommit
        self._current: list[str] = []

    def __repr__(self) -> str:  # never show the password
        where = f"{self.user}@{self.host}:{self.port}"
        return f"<ServerDetails {where} template {self.template_dbname}>"

    @property
    def template_dbname(self) -> str:
        """The template every test's copy is made from."""
        template = self.server.template
        assert template is not None  # the server is started before this object exists
        return template

    @property
    def dbname(self) -> str:
        """The running test's copy (see the class docstring), else the template."""
        return self._current[-1] if self._current else self.template_dbname

    @contextlib.contextmanager
    def holding(self, database: str) -> Iterator[None]:
        """While a test holds a connection to ``database``, ``dbname`` names it."""
        self._current.append(database)
        try:
            yield
        finally:
            self._current.remove(database)
