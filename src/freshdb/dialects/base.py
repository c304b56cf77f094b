"""What every database engine must supply: server tuning and all of freshdb's SQL.

A :class:`Dialect` owns every statement freshdb sends to a server. The backends
(where a server runs), the template builder and the pool call these methods and
never write SQL of their own, so adding an engine means adding one package here.

This module is a little over 400 lines on purpose: it is the whole contract an
engine fulfils, each method with what it must do, and reads best in one place. The
socket mechanics live in :mod:`.liveness`, the shared error messages in
:mod:`.server_errors`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from freshdb.config import Settings
from freshdb.dialects.liveness import run_if_still_inside, shut_down, socket_readable
from freshdb.dialects.versions import Flavour, check_server
from freshdb.naming import ParsedName, parse_database_name

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


class DBAPIConnection(Protocol):
    """The part of a PEP 249 connection freshdb uses."""

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


def scalar(conn: DBAPIConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """Run one statement and return the first column of the first row (or None)."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None
    finally:
        cursor.close()


def rows(conn: DBAPIConnection, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
    """Run one statement and return all rows."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        cursor.close()


@dataclasses.dataclass(frozen=True)
class ServerAddress:
    """How to reach a database server as its administrator."""

    host: str
    port: int
    user: str
    password: str
    admin_database: str

    def __repr__(self) -> str:  # never show the password
        return (
            f"ServerAddress(host={self.host!r}, port={self.port}, user={self.user!r}, "
            f"admin_database={self.admin_database!r})"
        )


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """How to run an engine's server image: what the Docker backend needs to know."""

    port: int
    environment: Mapping[str, str]
    command: Sequence[str]
    admin_user: str
    admin_database: str
    password_variables: Sequence[str]
    #: Where the server keeps its data, if the image declares no VOLUME.
    data_directory: str
    #: Replaces the image's entrypoint when not empty (``command`` then is its
    #: arguments), but only on an image whose entrypoint is the official images'
    #: :data:`OFFICIAL_ENTRYPOINT`, which it must fall back to (``exec
    #: docker-entrypoint.sh "$@"``) whenever it cannot do better; empty, or another
    #: image: the image's own entrypoint runs ``command``.
    entrypoint: Sequence[str] = ()


#: The entrypoint of the official postgres, mariadb and mysql images.
OFFICIAL_ENTRYPOINT = ("docker-entrypoint.sh",)


@dataclasses.dataclass(frozen=True)
class CopyRecipe:
    """What making a copy of one template needs beyond the clone itself.

    Captured once per template per session by :meth:`Dialect.copy_recipe`; each
    dialect's own kind (Postgres: settings and grants a clone does not carry; MySQL:
    the DDL to replay) is what its :meth:`Dialect.clone` takes.
    """

    template: str


@dataclasses.dataclass(frozen=True)
class ServerUse:
    """Who uses a server, apart from the connection that asked.

    What decides whether a sticky container may be removed: only an idle one is.
    """

    #: freshdb sessions holding their owner lease; ``None`` where the engine cannot
    #: list held locks (MySQL/MariaDB without performance_schema).
    sessions: int | None
    #: Client connections other than the asking one: freshdb's, a test's, a user's psql.
    connections: int

    @property
    def idle(self) -> bool:
        """No session and no other connection: removing the server disturbs nobody."""
        return self.connections == 0 and not self.sessions

    def describe(self) -> str:
        """E.g. ``"2 freshdb sessions, 7 connections"``."""
        parts = []
        if self.sessions is not None:
            parts.append(f"{self.sessions} freshdb session{'' if self.sessions == 1 else 's'}")
        parts.append(f"{self.connections} connection{'' if self.connections == 1 else 's'}")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class ServerDefaults:
    """An engine family's server facts: what a server URL that leaves them out means,
    who administers its image, and the official image of each engine."""

    port: int
    user: str
    admin_database: str
    #: The official image used when none is configured, per engine.
    images: Mapping[str, str]


class Dialect(abc.ABC):
    """The SQL and server settings of one engine family."""

    #: "postgres" or "mysql": the family, used in fingerprints and names.
    family: str
    #: SQLAlchemy's dialect name, for compiling DDL (e.g. "postgresql").
    sqlalchemy_name: str
    defaults: ServerDefaults

    # -- the server ------------------------------------------------------------
    def default_image(self, engine: str) -> str:
        """The official image used when none is configured."""
        return self.defaults.images[engine]

    @abc.abstractmethod
    def container_spec(self, settings: Settings, image: str, password: str) -> ContainerSpec:
        """Environment, arguments and port of a tuned server container."""

    def address_from_url(self, url: str) -> ServerAddress:
        """The admin address of an existing server given by URL."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        return ServerAddress(
            host=parsed.host or "localhost",
            port=parsed.port or self.defaults.port,
            user=parsed.username or self.defaults.user,
            password=parsed.password or "",
            admin_database=parsed.database or self.defaults.admin_database,
        )

    @abc.abstractmethod
    def sync_url(self, address: ServerAddress, database: str | None = None) -> URL:
        """A SQLAlchemy URL with a sync driver."""

    @abc.abstractmethod
    def async_url(self, address: ServerAddress, database: str | None = None) -> URL:
        """A SQLAlchemy URL with an async driver."""

    def warm_url(self, address: ServerAddress, database: str) -> URL:
        """The URL of a connection opened ahead of a copy's user (by a pool thread).

        Its connecting must be bounded (a paused server must not hold the pool's
        thread forever) without bounding what the copy's user later runs on it.
        """
        return self.sync_url(address, database)

    @abc.abstractmethod
    def connect(
        self, address: ServerAddress, database: str | None = None, timeout: float = 10.0
    ) -> DBAPIConnection:
        """A raw autocommit DBAPI connection (admin work, locks, readiness)."""

    def ping(self, address: ServerAddress, timeout: float = 2.0) -> None:
        """Run a real query; raise if the server does not answer it within ``timeout``.

        Bounded even when the server is paused or the network cut: connecting is
        bounded by the connect timeout, the query by :meth:`abort_after`.
        """
        conn = self.connect(address, timeout=timeout)
        try:
            with self.explained_errors(), self.abort_after(conn, timeout):
                self.scalar(conn, "SELECT 1")
        finally:
            conn.close()

    def connection_dropped(self, conn: DBAPIConnection) -> bool:
        """Whether the server has ended an idle connection (its server died, say).

        Cheap enough for every hand-out: a non-blocking look at the socket. An idle
        connection has nothing to read unless the server said goodbye (or hung up),
        so only then is a query run to tell. The caller must not use ``conn`` in
        another thread meanwhile.
        """
        fileno = self.connection_fileno(conn)
        if fileno is None:
            return False  # no socket to look at: assume alive
        if fileno < 0:
            return True
        try:
            readable = socket_readable(fileno)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        try:
            self.scalar(conn, "SELECT 1")
        except Exception:
            return True
        return False

    def abort(self, conn: DBAPIConnection) -> None:
        """End the connection's I/O at once, from any thread, without closing it.

        The socket is shut down (not closed: its owner still holds the descriptor),
        so a thread blocked reading or writing on it gets an error right away, as if
        the server had hung up; the owner then closes the connection as usual. The
        caller must make sure ``conn`` is not closed meanwhile (a closed descriptor
        number may already belong to another file).
        """
        fileno = self.connection_fileno(conn)
        if fileno is not None and fileno >= 0:
            shut_down(fileno)

    def abort_after(
        self, conn: DBAPIConnection, seconds: float
    ) -> contextlib.AbstractContextManager[None]:
        """Abort ``conn``'s I/O if the block takes longer than ``seconds``.

        For short round trips that must not hang when the server is paused or the
        network is cut, where the kernel (or Docker's port proxy) keeps the TCP
        connection looking healthy, so neither keepalives nor ``tcp_user_timeout``
        ever fire. Never use it around work that may legitimately take long.
        """
        return run_if_still_inside(seconds, lambda: self.abort(conn))

    def connection_fileno(self, conn: DBAPIConnection) -> int | None:
        """The socket of a DBAPI connection: -1 if it is closed, None if unknown."""
        if getattr(conn, "closed", False):
            return -1
        fileno = getattr(conn, "fileno", None)
        if not callable(fileno):
            return None
        try:
            return int(fileno())
        except Exception:
            return -1

    scalar = staticmethod(scalar)
    rows = staticmethod(rows)

    def prepare_new_server(self, address: ServerAddress) -> None:
        """One-time tuning of a server freshdb has just started (never an external one)."""
        return None

    def require_password_iterations(
        self, conn: DBAPIConnection, address: ServerAddress, iterations: int
    ) -> None:
        """Make the admin password's stored hash take at least ``iterations`` (a driver
        that refuses fewer), where :meth:`prepare_new_server` stored a cheaper one."""
        return None

    @abc.abstractmethod
    def server_version(self, conn: DBAPIConnection) -> str:
        """The server's version as ``"<flavour> <major>"``, e.g. ``"postgres 15"``."""

    @abc.abstractmethod
    def server_release(self, conn: DBAPIConnection) -> tuple[Flavour, tuple[int, ...]]:
        """Which server answers, and its version: ``("mysql", (9, 7, 4))``."""

    def server_identity(self, conn: DBAPIConnection) -> str | None:
        """A value that tells this server apart from every other one, made when its data
        directory was (``None``: the engine has none, and no start may trust a
        recorded address of it).

        A start that reuses a recorded address checks it, so a foreign server on a
        reused port (or a newer container of the same name) is never taken for ours.
        """
        return None

    def check_supported(
        self, address: ServerAddress, engine: str, where: str, hint: str | None = None
    ) -> None:
        """Raise :class:`~freshdb.errors.UnsupportedServerError` unless the server at
        ``address`` is one ``engine`` runs, in a release freshdb supports."""
        conn = self.connect(address)
        try:
            flavour, version = self.server_release(conn)
        finally:
            conn.close()
        check_server(engine, flavour, version, where, hint)

    @abc.abstractmethod
    def translate_error(self, exc: BaseException) -> Exception | None:
        """A ``FreshDBError`` for a driver error freshdb can explain, else ``None``."""

    @contextlib.contextmanager
    def explained_errors(self, *kinds: type[Exception]) -> Iterator[None]:
        """Raise, in place of an error of ``kinds`` (default: any) the block raises, what
        :meth:`translate_error` makes of it (the original stays attached as the cause)."""
        caught = kinds or (Exception,)
        try:
            yield
        except caught as exc:
            translated = self.translate_error(exc)
            if translated is None:
                raise
            raise translated from exc

    # -- ownership and locks ------------------------------------------------------
    @abc.abstractmethod
    def take_owner_lease(self, conn: DBAPIConnection, owner: str) -> None:
        """Hold a lock named after ``owner`` for the life of ``conn``."""

    @abc.abstractmethod
    def live_owners(self, conn: DBAPIConnection, owners: Sequence[str]) -> set[str]:
        """Which of ``owners`` still hold their lease (their process is alive)."""

    @abc.abstractmethod
    def server_use(self, conn: DBAPIConnection) -> ServerUse:
        """Who else uses the server: owner leases held, other client connections."""

    @abc.abstractmethod
    def lock_template(self, conn: DBAPIConnection, fingerprint: str, timeout: float) -> None:
        """Take the exclusive build lock of a template (blocks up to ``timeout``)."""

    @abc.abstractmethod
    def unlock_template(self, conn: DBAPIConnection, fingerprint: str) -> None:
        """Release the exclusive build lock of a template."""

    @abc.abstractmethod
    def mark_template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> None:
        """Record, for the life of ``conn``, that this session clones the template.

        Called while holding the build lock, so a remover holding that lock sees
        every user. Must not conflict with other sessions' build locks."""

    @abc.abstractmethod
    def try_lock_template(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Take the exclusive build lock of a template if it is free now; never waits.

        Holding it, nobody builds, removes or starts using the template, so its
        metadata can be read and changed safely. On True, call :meth:`unlock_template`."""

    @abc.abstractmethod
    def template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Whether a live session clones the template (ask holding its build lock)."""

    def try_lock_unused_template(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Take the build lock of a template if no live session uses it; else False.

        On True the caller removes the template, then calls :meth:`unlock_template`."""
        if not self.try_lock_template(conn, fingerprint):
            return False  # being built, removed, or a session is starting to use it
        try:
            in_use = self.template_in_use(conn, fingerprint)
        except BaseException:
            self.unlock_template(conn, fingerprint)
            raise
        if in_use:
            self.unlock_template(conn, fingerprint)
            return False
        return True

    # -- databases --------------------------------------------------------------
    @abc.abstractmethod
    def list_databases(self, conn: DBAPIConnection, prefix: str) -> list[str]:
        """Names of all databases whose names start with ``{prefix}_``."""

    def our_databases(
        self, conn: DBAPIConnection, prefix: str, kinds: Collection[str] | None = None
    ) -> list[ParsedName]:
        """freshdb's own databases for ``prefix`` (by their names), optionally of some kinds."""
        return [
            parsed
            for name in self.list_databases(conn, prefix)
            if (parsed := parse_database_name(prefix, name))
            and (kinds is None or parsed.kind in kinds)
        ]

    @abc.abstractmethod
    def database_exists(self, conn: DBAPIConnection, name: str) -> bool:
        """Whether a database of that name exists."""

    @abc.abstractmethod
    def create_database(self, conn: DBAPIConnection, name: str) -> None:
        """Create an empty database."""

    @abc.abstractmethod
    def drop_database(self, conn: DBAPIConnection, name: str) -> None:
        """Drop a database if it exists, disconnecting anyone still connected."""

    @abc.abstractmethod
    def template_is_complete(self, conn: DBAPIConnection, template: str) -> bool:
        """Whether a complete (successfully migrated) template of that name exists."""

    @abc.abstractmethod
    def build_database_name(self, template: str, build: str) -> str:
        """The database the migrations run in: ``build`` if the engine can rename
        databases, else ``template`` itself (completion then marked inside it)."""

    @abc.abstractmethod
    def complete_template(
        self, conn: DBAPIConnection, build: str, template: str, comment: str
    ) -> None:
        """Turn a successfully migrated build into the complete template (atomic)."""

    @abc.abstractmethod
    def copy_recipe(self, conn: DBAPIConnection, template: str) -> CopyRecipe:
        """Capture what cloning ``template`` needs, once per session."""

    @abc.abstractmethod
    def clone(self, conn: DBAPIConnection, recipe: CopyRecipe, name: str) -> None:
        """Make database ``name`` a copy of the recipe's template."""

    def copy_database(self, conn: DBAPIConnection, source: str, name: str, timeout: float) -> None:
        """Make database ``name`` a copy of the committed state of ``source``: a template,
        or a database in use (a handed-out copy, for ``db.snapshot``).

        Waits up to ``timeout`` for what keeps ``source`` from being copied, then
        raises a :class:`~freshdb.errors.FreshDBError` saying what to close.
        """
        self.clone(conn, self.copy_recipe(conn, source), name)

    @abc.abstractmethod
    def rename_database(self, conn: DBAPIConnection, old: str, new: str) -> None:
        """Rename a database (used to keep a failed test's copy)."""

    @abc.abstractmethod
    def database_sizes(self, conn: DBAPIConnection, names: Sequence[str]) -> dict[str, int]:
        """Bytes used by each named database."""

    @abc.abstractmethod
    def database_comment(self, conn: DBAPIConnection, name: str) -> str | None:
        """The comment freshdb stored on a template, if any."""

    @abc.abstractmethod
    def set_template_comment(self, conn: DBAPIConnection, template: str, comment: str) -> None:
        """Replace the comment of a complete template (its metadata: when it was last used).

        Called holding the template's build lock; the comment never reaches a copy."""

    def database_created(
        self, conn: DBAPIConnection, names: Sequence[str]
    ) -> dict[str, dt.datetime]:
        """When each named database was created, where the engine can tell (else absent).

        ``freshdb prune --max-age`` removes kept copies only when their age is known.
        """
        return {}
