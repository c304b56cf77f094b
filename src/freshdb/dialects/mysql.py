"""MySQL and MariaDB: tuning flags and every statement freshdb sends to them.

Neither engine has ``CREATE DATABASE … TEMPLATE`` nor can rename a database, so the
same guarantees as on Postgres are kept differently:

- A template is built under its final name and is complete only once a marker
  table exists in it, made last by an atomic ``RENAME TABLE``. A template without
  the marker is a crashed build: the next builder drops it and starts over.
- A copy replays the template's DDL, captured once per session with ``SHOW
  CREATE`` read *with the template as the current database* (otherwise a copied
  view keeps reading the template's tables), then copies the rows with
  ``INSERT … SELECT`` under ``FOREIGN_KEY_CHECKS=0``. ``CREATE TABLE … LIKE`` is
  not used: it silently drops foreign keys.
- There are no shared named locks: a session marks a template in use by holding
  one of a fixed set of per-template "user slot" locks, taken under the template's
  exclusive lock; a template none of whose slots is held is unused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pymysql
from pymysql.constants import CLIENT
from sqlalchemy.engine import URL

from freshdb import naming
from freshdb.config import Settings
from freshdb.dialects import versions
from freshdb.dialects.base import (
    ContainerSpec,
    CopyRecipe,
    DBAPIConnection,
    Dialect,
    ServerAddress,
    ServerUse,
)
from freshdb.dialects.versions import image_version
from freshdb.errors import (
    ConfigurationError,
    FreshDBError,
    ServerFullError,
    ServerUnavailableError,
)

log = logging.getLogger("freshdb")

Flavour = Literal["mysql", "mariadb"]

_SERVER_VERSION = re.compile(r"^(\d+)\.(\d+)")
# The longest wait_timeout both engines accept (a year): admin connections, the lease
# above all, must outlive an idle session (the default closes them after 8 hours).
_IDLE_TIMEOUT = 31536000
# How long marking a template in use may wait for a build of it to finish.
_MARK_IN_USE_TIMEOUT = 600.0
# Bounded I/O on admin connections. PyMySQL's read timeout bounds each wait for the
# server's answer to one statement, so it must outlast the longest legitimate one:
# a GET_LOCK wait (up to _MARK_IN_USE_TIMEOUT, or a builder's lock timeout) or one
# INSERT … SELECT copying a big table of a template. 15 minutes does; it is the
# last resort for a connection nobody watches; a session notices a paused or cut
# server much sooner (`stop()` and `database()` check whether it still answers).
_READ_TIMEOUT = 900.0
# Writing blocks only once the server stops reading what it is sent; a live server
# reads a whole statement before running it, however long it then takes.
_WRITE_TIMEOUT = 120.0
# DDL waiting for a metadata lock (DROP DATABASE of a copy something still reads):
# the server's default is a day (MariaDB) or a year (MySQL). Two minutes is far more
# than freshdb's own DDL ever waits, and ends a wait on someone's stuck transaction.
_LOCK_WAIT_TIMEOUT = 120
# TCP keepalive probes and a limit on unacknowledged data (see the Postgres dialect):
# they end a connection whose server host or network is gone, never a slow statement.
_KEEPALIVE_IDLE, _KEEPALIVE_INTERVAL, _KEEPALIVE_COUNT = 10, 5, 3
_TCP_USER_TIMEOUT_MS = 30_000

# Error numbers (server errors from include/mysqld_error.h, client errors from errmsg.h).
_TOO_MANY_CONNECTIONS = {1040, 1203}
_ACCESS_DENIED = {1044, 1045, 1142, 1227, 1698}
# 3675: MySQL 8+ could not create a table's tablespace file ("as disk is full").
_FULL = {1021, 1037, 1041, 1114, 3675}
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055}
_UNKNOWN_THREAD = 1094
# 28 is ENOSPC; MariaDB 11 reports a table it cannot create on a full disk as
# 1005 with handler error 135 ("No more room in record file").
_NO_SPACE = re.compile(
    r"errno:? ?28\b|errcode:? ?28\b|error 28\b|no space left|no more room in record file",
    re.IGNORECASE,
)


# -- the server: flags chosen per flavour and version (pure, unit-tested) ---------------
def image_flavour(engine: str, image: str) -> Flavour:
    """Which server an image runs: its name decides, else the configured engine."""
    named = versions.image_flavour(image)
    if named == "mysql" or named == "mariadb":
        return named
    return "mariadb" if engine == "mariadb" else "mysql"


def server_flags(flavour: Flavour, version: tuple[int, ...], max_connections: int) -> list[str]:
    """The server's command-line flags: durability off, nothing a test does not need.

    Data lives on tmpfs and is thrown away, so every flush, doublewrite and binary
    log write is wasted work. Option names and values differ between the flavours
    and across versions; each choice below says which server it is for.
    """
    flags = [
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-log-bin",  # MySQL 8 logs binary by default; MariaDB accepts it too
        "--skip-name-resolve",
        f"--max-connections={max_connections}",
        # A fixed, modest pool: copies are tiny, and a big pool only costs memory.
        "--innodb-buffer-pool-size=128M",
        # The hash index is maintained on every DROP TABLE; tests never benefit from it.
        "--innodb-adaptive-hash-index=OFF",
        # Persistent statistics are rows written on every CREATE TABLE and deleted on
        # every DROP: measured here, a quarter or more of the time of copying 20 tables.
        "--innodb-stats-persistent=OFF",
        "--innodb-stats-auto-recalc=OFF",
    ]
    if flavour == "mariadb":
        # Boolean before 11.x, ENUM (OFF/ON/fast) after: 0 means OFF for both.
        flags.append("--innodb-doublewrite=0")
        if version < (11, 0):
            # Also keeps InnoDB from trying O_DIRECT, which tmpfs does not support.
            flags.append("--innodb-flush-method=nosync")
        # From 11.0 innodb_flush_method is deprecated (and nosync means fsync): leave
        # it alone; InnoDB falls back from O_DIRECT by itself, and fsync is free on tmpfs.
        return flags
    # MySQL: innodb_doublewrite became an ENUM (ON/OFF/DETECT_*) in 8.0.30 and OFF is
    # the documented spelling from 8.0.20 on; older releases take the Boolean 0.
    flags.append("--innodb-doublewrite=OFF" if version >= (8, 0, 20) else "--innodb-doublewrite=0")
    # MySQL has no nosync it supports; O_DIRECT fails on tmpfs and O_DIRECT_NO_FSYNC
    # is unsafe on some file systems. fsync works everywhere and costs nothing on tmpfs.
    flags.append("--innodb-flush-method=fsync")
    # Performance schema is on by default in MySQL (off in MariaDB) and costs ~400 MB.
    flags.append("--performance-schema=OFF")
    if version >= (8, 0, 11):
        # The X protocol plugin (port 33060), on by default since 8.0.11; unused here.
        flags.append("--mysqlx=OFF")
    return flags


def _bound_tcp(sock: socket.socket | None) -> None:
    """Keepalives and a limit on unacknowledged data on a connection's socket."""
    if sock is None:
        return
    options = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", _KEEPALIVE_IDLE),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", _KEEPALIVE_INTERVAL),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", _KEEPALIVE_COUNT),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", _TCP_USER_TIMEOUT_MS),
    ]
    for level, name, value in options:
        option = getattr(socket, name, None)  # not every platform has every option
        if option is None:
            continue
        with contextlib.suppress(OSError):  # a unix socket has no TCP options
            sock.setsockopt(level, option, value)


# -- SQL text -----------------------------------------------------------------------------
def _quote(identifier: str) -> str:
    """A backquoted identifier (any name the server reports back to us)."""
    return "`" + identifier.replace("`", "``") + "`"


def _db(name: str) -> str:
    """A backquoted database name freshdb made (checked first: never unchecked SQL)."""
    return _quote(naming.check_identifier(name))


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclasses.dataclass(frozen=True)
class SchemaObjects:
    """A database's objects as DDL, read with the database as the current one."""

    character_set: str
    collation: str
    #: ``(table, CREATE TABLE …)`` of every base table but the completion marker.
    tables: tuple[tuple[str, str], ...] = ()
    #: MariaDB sequences: ``(name, CREATE SEQUENCE …, next value)``.
    sequences: tuple[tuple[str, str, int], ...] = ()
    #: ``CREATE VIEW …`` ordered so a view comes after the views it reads.
    views: tuple[str, ...] = ()
    #: Routines, triggers and events: ``(sql_mode they were made under, time zone of
    #: an event's schedule or None, DDL)``.
    programs: tuple[tuple[str, str | None, str], ...] = ()

    def replay(self, with_tables: bool, inserts: Sequence[str] = ()) -> list[str]:
        """Statements re-creating these objects in the current database.

        ``with_tables``: create the tables and sequences too, then run ``inserts``
        (which fill them) before any trigger exists to fire on them. Without, only
        views and programs are made (the tables are moved there separately).
        """
        # Like mysqldump: no FK checks (any table order), permissive sql_mode so DDL
        # made under another mode replays, NO_AUTO_VALUE_ON_ZERO so an id 0 stays 0,
        # UTC so TIMESTAMP values cross unchanged.
        statements = [
            "SET SESSION foreign_key_checks = 0, unique_checks = 0, "
            "sql_mode = 'NO_AUTO_VALUE_ON_ZERO', time_zone = '+00:00'"
        ]
        if with_tables:
            for name, ddl, next_value in self.sequences:
                statements.append(ddl)
                statements.append(f"SELECT SETVAL({_quote(name)}, {next_value}, 0)")
            statements.extend(ddl for _, ddl in self.tables)
            statements.extend(inserts)
        statements.extend(self.views)
        current_mode: str | None = None
        current_zone: str | None = None
        for sql_mode, time_zone, ddl in self.programs:
            if sql_mode != current_mode:
                statements.append(f"SET SESSION sql_mode = {_literal(sql_mode)}")
                current_mode = sql_mode
            if time_zone is not None and time_zone != current_zone:
                # An event's schedule is read in the zone it was made in, and kept.
                statements.append(f"SET SESSION time_zone = {_literal(time_zone)}")
                current_zone = time_zone
            statements.append(ProgramDefinition(ddl))
        statements.append(
            "SET SESSION foreign_key_checks = DEFAULT, unique_checks = DEFAULT, "
            "sql_mode = DEFAULT, time_zone = DEFAULT"
        )
        return statements

    @property
    def empty(self) -> bool:
        """Whether there is nothing to re-create."""
        return not (self.tables or self.sequences or self.views or self.programs)


class ProgramDefinition(str):
    """The DDL of a routine, trigger or event: it must be the last statement of its
    round trip.

    MySQL takes a body that is a single statement (``DO DELETE …``, ``FOR EACH ROW
    SET …``) to run up to the end of the statement, and in a multi-statement script
    that includes the ``;`` after it, which it then keeps in the body.
    """

    __slots__ = ()


@dataclasses.dataclass(frozen=True)
class CopyScript:
    """What making a copy of one template runs (a :class:`CopyRecipe`'s payload)."""

    character_set: str
    collation: str
    #: Run with the new copy as the current database.
    statements: tuple[str, ...]


def order_views(views: Sequence[tuple[str, str]]) -> list[str]:
    """View DDL in an order where each view follows the views it reads.

    ``views`` is ``(name, CREATE VIEW …)``. The server writes every identifier
    backquoted, so a view reads another if the other's quoted name appears in its
    text (a column of the same name only adds a harmless extra edge). On a cycle
    (only possible through such extra edges) the remaining views keep their order.
    """
    pending = dict(views)
    needs = {
        name: {other for other in pending if other != name and _quote(other) in ddl}
        for name, ddl in pending.items()
    }
    ordered: list[str] = []
    done: set[str] = set()
    while pending:
        ready = [name for name in pending if needs[name] <= done]
        for name in ready or list(pending):
            ordered.append(pending.pop(name))
            done.add(name)
    return ordered


class MySQLDialect(Dialect):
    """MySQL 8.0 and MariaDB 10.6 or newer (the policy is in :mod:`freshdb.dialects.versions`)."""

    family = "mysql"
    engines = ("mysql", "mariadb")
    sqlalchemy_name = "mysql"
    default_port = 3306
    default_user = "root"
    default_admin_database = ""

    # -- the server ------------------------------------------------------------
    def default_image(self, engine: str) -> str:
        # A long-term-support release of each. For MySQL, the 9.7 line is the one the
        # test suite runs for real (8.4's flag choices are unit-tested only).
        return "mariadb:11.4" if engine == "mariadb" else "mysql:9.7"

    def container_spec(self, settings: Settings, image: str, password: str) -> ContainerSpec:
        flavour = image_flavour(settings.engine, image)
        command = server_flags(flavour, image_version(image), settings.max_connections)
        # Both images' variables: MariaDB's image reads MYSQL_* as aliases and MySQL's
        # ignores MARIADB_*, so an image whose name does not tell which server it runs
        # still starts, and the server's reported version then tells (and is checked).
        environment = {
            "MARIADB_ROOT_PASSWORD": password,
            "MYSQL_ROOT_PASSWORD": password,
            # Loading time zone tables takes seconds at first start; tests need none.
            "MARIADB_INITDB_SKIP_TZINFO": "1",
            "MYSQL_INITDB_SKIP_TZINFO": "1",
        }
        return ContainerSpec(
            port=3306,
            environment=environment,
            command=command,
            admin_user="root",
            admin_database="",
            password_variables=("MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"),
            data_directory="/var/lib/mysql",
        )

    def sync_url(self, address: ServerAddress, database: str | None = None) -> URL:
        return URL.create(
            "mysql+pymysql",
            username=address.user,
            password=address.password,
            host=address.host,
            port=address.port,
            database=database or address.admin_database or None,
            # PyMySQL builds a TLS context on every connect (~20 ms) unless told not to.
            query={"ssl_disabled": "true"},
        )

    def async_url(self, address: ServerAddress, database: str | None = None) -> URL:
        # aiomysql uses TLS only when given a context: nothing to disable.
        return URL.create(
            "mysql+aiomysql",
            username=address.user,
            password=address.password,
            host=address.host,
            port=address.port,
            database=database or address.admin_database or None,
        )

    def connect(
        self, address: ServerAddress, database: str | None = None, timeout: float = 10.0
    ) -> DBAPIConnection:
        try:
            connection: DBAPIConnection = pymysql.connect(
                host=address.host,
                port=address.port,
                user=address.user,
                password=address.password,
                database=database or address.admin_database or None,
                autocommit=True,
                connect_timeout=max(1, math.ceil(timeout)),
                # PyMySQL's connect timeout covers only the TCP connect: the
                # handshake that follows is bounded by the read timeout, so a paused
                # server (whose kernel accepts the TCP connection) cannot hang it.
                read_timeout=max(1.0, timeout),
                write_timeout=_WRITE_TIMEOUT,
                charset="utf8mb4",
                # A local test server: TLS only costs ~20 ms per connect.
                ssl_disabled=True,
                # A copy's whole script goes to the server in one round trip: measured
                # here, 10 ms instead of 23 ms for 20 tables with rows.
                client_flag=CLIENT.MULTI_STATEMENTS,
                init_command=f"SET SESSION wait_timeout = {_IDLE_TIMEOUT}, "
                f"lock_wait_timeout = {_LOCK_WAIT_TIMEOUT}",
            )
        except (pymysql.Error, RuntimeError) as exc:
            translated = self.translate_error(exc)
            if translated is not None:
                raise translated from exc
            raise
        # Connected: from now on a statement may legitimately take long (PyMySQL sets
        # the socket's timeout from this before every read).
        connection._read_timeout = _READ_TIMEOUT  # type: ignore[attr-defined]
        _bound_tcp(getattr(connection, "_sock", None))
        return connection

    def server_version(self, conn: DBAPIConnection) -> str:
        version = str(self.scalar(conn, "SELECT VERSION()"))
        flavour = "mariadb" if "mariadb" in version.lower() else "mysql"
        match = _SERVER_VERSION.match(version)
        return f"{flavour} {match.group(1)}.{match.group(2)}" if match else f"{flavour} {version}"

    def server_release(self, conn: DBAPIConnection) -> tuple[versions.Flavour, tuple[int, ...]]:
        version = str(self.scalar(conn, "SELECT VERSION()"))
        # MariaDB says so in its version ("10.11.18-MariaDB-0+deb12u1"); MySQL does not.
        flavour: Flavour = "mariadb" if "mariadb" in version.lower() else "mysql"
        return flavour, versions.parse_reported_version(version)

    def translate_error(self, exc: BaseException) -> Exception | None:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        message = text.strip().splitlines()[0] if text.strip() else repr(exc)
        if isinstance(exc, RuntimeError) and "cryptography" in str(exc):
            return ConfigurationError(
                f"connecting needs the 'cryptography' package ({exc}): MySQL 8 authenticates "
                "with caching_sha2_password — pip install 'freshdb[mysql]'"
            )
        if not isinstance(exc, pymysql.Error):
            return None
        if code in _TOO_MANY_CONNECTIONS:
            return ServerFullError(
                f"the server refused a connection: max_connections reached ({message}) — "
                "lower pool_size or the number of workers, close connections your tests "
                "leave open, or raise FRESHDB_MAX_CONNECTIONS"
            )
        if code in _FULL or _NO_SPACE.search(text):
            return ServerFullError(
                f"the server ran out of space or memory ({message}) — run `freshdb prune` "
                "to drop leftover copies and stale templates, lower pool_size, or raise "
                "FRESHDB_TMPFS_SIZE"
            )
        if code in _ACCESS_DENIED:
            return ConfigurationError(
                f"the server refused the user or an operation ({message}) — check the user "
                "and password in FRESHDB_URL / url=; the user must be allowed to create and "
                "drop databases"
            )
        if code in _UNREACHABLE:
            return ServerUnavailableError(
                f"cannot reach the server ({message}) — is it running? For a "
                "freshdb-managed server, `freshdb status` shows it"
            )
        if isinstance(exc, pymysql.InterfaceError):
            # PyMySQL's "(0, '')": the connection was already lost by an earlier call.
            return ServerUnavailableError(
                "the connection to the server is closed (it was lost earlier) — is the "
                "server running? For a freshdb-managed server, `freshdb status` shows it"
            )
        return None

    def connection_fileno(self, conn: DBAPIConnection) -> int | None:
        # PyMySQL has no fileno(); its socket is dropped (None) once the connection is.
        sock = getattr(conn, "_sock", None)
        return -1 if sock is None else int(sock.fileno())

    # -- ownership and locks ------------------------------------------------------
    def take_owner_lease(self, conn: DBAPIConnection, owner: str) -> None:
        # The lease dies with this connection (connect() keeps it from idling out).
        taken = self.scalar(conn, "SELECT GET_LOCK(%s, 0)", (naming.owner_lease_lock(owner),))
        if taken != 1:  # owner ids are random; a clash means a broken random source
            raise FreshDBError(f"owner id {owner} is already in use on this server")

    def live_owners(self, conn: DBAPIConnection, owners: Sequence[str]) -> set[str]:
        alive: set[str] = set()
        owners = list(owners)
        for start in range(0, len(owners), 100):
            chunk = owners[start : start + 100]
            held = self._first_row(
                conn,
                "SELECT " + ", ".join(["IS_USED_LOCK(%s)"] * len(chunk)),
                [naming.owner_lease_lock(owner) for owner in chunk],
            )
            alive.update(owner for owner, holder in zip(chunk, held, strict=True) if holder)
        return alive

    def server_use(self, conn: DBAPIConnection) -> ServerUse:
        # Held named locks cannot be listed without performance_schema (off here, and
        # absent in MariaDB), so every other client connection counts: a session's
        # lease is one. The server's own threads are not clients.
        connections = self.scalar(
            conn,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            "AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID') "
            "AND USER NOT IN ('system user', 'event_scheduler')",
        )
        return ServerUse(sessions=None, connections=int(connections or 0))

    def lock_template(self, conn: DBAPIConnection, fingerprint: str, timeout: float) -> None:
        # GET_LOCK is re-entrant per session: every take needs its own release.
        if self.try_lock_template(conn, fingerprint):
            return
        log.info(
            "waiting for the lock of template %s, held by %s",
            fingerprint[:20],
            self.template_lock_holder(conn, fingerprint) or "another session",
        )
        taken = self.scalar(
            conn,
            "SELECT GET_LOCK(%s, %s)",
            (naming.template_build_lock(fingerprint), max(0, math.ceil(timeout))),
        )
        if taken != 1:
            holder = self.template_lock_holder(conn, fingerprint) or "a session that just left"
            raise FreshDBError(
                f"waited {timeout:.0f} s for the lock of template {fingerprint[:20]}, held by "
                f"{holder} — it is still building or removing that template; if that "
                "process hangs, end it (its lock goes with its connection)"
            )

    def try_lock_template(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        taken = self.scalar(
            conn, "SELECT GET_LOCK(%s, 0)", (naming.template_build_lock(fingerprint),)
        )
        return bool(taken == 1)

    def template_lock_holder(self, conn: DBAPIConnection, fingerprint: str) -> str | None:
        # IS_USED_LOCK names the holder's connection; the process list says more.
        holder = self.scalar(
            conn, "SELECT IS_USED_LOCK(%s)", (naming.template_build_lock(fingerprint),)
        )
        if holder is None:
            return None
        row = self._first_row(
            conn,
            "SELECT USER, HOST, TIME, COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s",
            (int(holder),),
        )
        if not row:
            return f"connection {int(holder)}"
        user, host, seconds, command = row
        state = f"{command} for {int(seconds or 0)} s"
        return f"connection {int(holder)} (user {user} from {host}, {state})"

    def unlock_template(self, conn: DBAPIConnection, fingerprint: str) -> None:
        self.scalar(conn, "SELECT RELEASE_LOCK(%s)", (naming.template_build_lock(fingerprint),))

    def mark_template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> None:
        # Slots are taken only under the exclusive lock (re-entrant if the caller holds
        # it), so a pruner holding that lock sees every user and no new one can appear.
        self.lock_template(conn, fingerprint, _MARK_IN_USE_TIMEOUT)
        try:
            me, *holders = self._first_row(
                conn, "SELECT CONNECTION_ID(), " + self._slot_probe(), self._slots(fingerprint)
            )
            if me in holders:
                return
            for slot, holder in enumerate(holders):
                if holder is None and self.scalar(
                    conn, "SELECT GET_LOCK(%s, 0)", (naming.template_user_lock(fingerprint, slot),)
                ):
                    return
            raise FreshDBError(
                f"more than {naming.TEMPLATE_USER_SLOTS} sessions use template "
                f"{fingerprint[:20]} on this server at once — use fewer workers"
            )
        finally:
            self.unlock_template(conn, fingerprint)

    def template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        holders = self._first_row(conn, "SELECT " + self._slot_probe(), self._slots(fingerprint))
        return any(holder is not None for holder in holders)

    @staticmethod
    def _slots(fingerprint: str) -> list[str]:
        return [
            naming.template_user_lock(fingerprint, slot)
            for slot in range(naming.TEMPLATE_USER_SLOTS)
        ]

    @staticmethod
    def _slot_probe() -> str:
        return ", ".join(["IS_USED_LOCK(%s)"] * naming.TEMPLATE_USER_SLOTS)

    # -- databases --------------------------------------------------------------
    def list_databases(self, conn: DBAPIConnection, prefix: str) -> list[str]:
        rows = self.rows(
            conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
            "ORDER BY SCHEMA_NAME",
            (naming.database_like_pattern(prefix),),
        )
        return [str(row[0]) for row in rows]

    def database_exists(self, conn: DBAPIConnection, name: str) -> bool:
        return bool(
            self.scalar(
                conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
            )
        )

    def create_database(self, conn: DBAPIConnection, name: str) -> None:
        self._execute(conn, f"CREATE DATABASE {_db(name)}")

    def drop_database(self, conn: DBAPIConnection, name: str) -> None:
        quoted = _db(name)
        self._disconnect_users(conn, name)
        self._execute(conn, f"DROP DATABASE IF EXISTS {quoted}")

    def _disconnect_users(self, conn: DBAPIConnection, name: str) -> None:
        sessions = self.rows(
            conn,
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            (name,),
        )
        for (session,) in sessions:
            try:
                self._execute(conn, f"KILL CONNECTION {int(session)}")
            except pymysql.Error as exc:
                if exc.args and exc.args[0] == _UNKNOWN_THREAD:
                    continue  # it ended meanwhile
                raise

    def template_is_complete(self, conn: DBAPIConnection, template: str) -> bool:
        return self._has_table(conn, template, naming.COMPLETION_MARKER_TABLE)

    def build_database_name(self, template: str, build: str) -> str:
        # No RENAME DATABASE: build in place; the marker table is the commit point.
        return template

    def complete_template(
        self, conn: DBAPIConnection, build: str, template: str, comment: str
    ) -> None:
        if build != template:
            self.rename_database(conn, build, template)
        pending = f"{_db(template)}.{_quote(naming.COMPLETION_MARKER_PENDING_TABLE)}"
        self._execute(conn, f"DROP TABLE IF EXISTS {pending}")
        self._execute(conn, f"CREATE TABLE {pending} (comment LONGTEXT NOT NULL)")
        self._execute(conn, f"INSERT INTO {pending} (comment) VALUES (%s)", (comment,))
        # RENAME TABLE is atomic: the marker appears complete, with its row, or not at all.
        self._execute(
            conn,
            f"RENAME TABLE {pending} TO {_db(template)}.{_quote(naming.COMPLETION_MARKER_TABLE)}",
        )

    def copy_recipe(self, conn: DBAPIConnection, template: str) -> CopyRecipe:
        objects = self.schema_objects(conn, template)
        script = CopyScript(
            character_set=objects.character_set,
            collation=objects.collation,
            statements=tuple(self._copy_statements(conn, template, objects)),
        )
        return CopyRecipe(template=template, payload=script)

    def _copy_statements(
        self, conn: DBAPIConnection, template: str, objects: SchemaObjects
    ) -> list[str]:
        if objects.empty:
            return []
        inserts = [
            f"INSERT INTO {_quote(table)} ({columns}) SELECT {columns} "
            f"FROM {_db(template)}.{_quote(table)}"
            for table, columns in self._tables_with_rows(conn, template, objects)
        ]
        return objects.replay(with_tables=True, inserts=inserts)

    def _tables_with_rows(
        self, conn: DBAPIConnection, template: str, objects: SchemaObjects
    ) -> list[tuple[str, str]]:
        """``(table, column list)`` of each table holding rows (empty ones cost nothing)."""
        tables = [table for table, _ in objects.tables]
        if not tables:
            return []
        probe = " UNION ALL ".join(
            f"SELECT {_literal(table)}, EXISTS(SELECT 1 FROM {_db(template)}.{_quote(table)})"
            for table in tables
        )
        filled = {str(table) for table, has_rows in self.rows(conn, probe) if has_rows}
        if not filled:
            return []
        # Generated columns are computed, never inserted; system-versioning period
        # columns (MariaDB) are set by the server. Invisible ones are listed by name.
        columns: dict[str, list[str]] = {}
        for table, column, extra in self.rows(
            conn,
            "SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND COALESCE(GENERATION_EXPRESSION, '') = '' "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (template,),
        ):
            if str(table) in filled and not re.search(r"ROW (START|END)", str(extra or ""), re.I):
                columns.setdefault(str(table), []).append(_quote(str(column)))
        return [(table, ", ".join(columns[table])) for table in tables if table in columns]

    def clone(self, conn: DBAPIConnection, recipe: CopyRecipe, name: str) -> None:
        script = recipe.payload
        if not isinstance(script, CopyScript):
            raise FreshDBError(f"the copy recipe of {recipe.template} was not made by MySQL")
        quoted = _db(name)
        statements = [
            f"CREATE DATABASE {quoted} CHARACTER SET {_quote(script.character_set)} "
            f"COLLATE {_quote(script.collation)}"
        ]
        if script.statements:
            statements += [f"USE {quoted}", *script.statements, *_LEAVE_DATABASE]
        self._run_script(conn, statements)

    def rename_database(self, conn: DBAPIConnection, old: str, new: str) -> None:
        # Tables move with RENAME TABLE (instant); views, routines and events cannot
        # move between databases, and triggers block the move: re-create those.
        self._disconnect_users(conn, old)
        objects = self.schema_objects(conn, old)
        statements = [
            f"CREATE DATABASE {_db(new)} CHARACTER SET {_quote(objects.character_set)} "
            f"COLLATE {_quote(objects.collation)}"
        ]
        for (trigger,) in self.rows(
            conn,
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            (old,),
        ):
            statements.append(f"DROP TRIGGER {_db(old)}.{_quote(str(trigger))}")
        movable = [table for table, _ in objects.tables] + [seq for seq, _, _ in objects.sequences]
        movable += [
            str(row[0])
            for row in self.rows(
                conn,
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME IN (%s, %s)",
                (old, naming.COMPLETION_MARKER_TABLE, naming.COMPLETION_MARKER_PENDING_TABLE),
            )
        ]
        if movable:
            statements.append(
                "RENAME TABLE "
                + ", ".join(
                    f"{_db(old)}.{_quote(table)} TO {_db(new)}.{_quote(table)}" for table in movable
                )
            )
        replay = objects.replay(with_tables=False)
        statements += [f"USE {_db(new)}", *replay, *_LEAVE_DATABASE]
        statements.append(f"DROP DATABASE {_db(old)}")
        self._run_script(conn, statements)

    def database_sizes(self, conn: DBAPIConnection, names: Sequence[str]) -> dict[str, int]:
        if not names:
            return {}
        marks = ", ".join(["%s"] * len(names))
        rows = self.rows(
            conn,
            "SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) "
            "FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t "
            f"ON t.TABLE_SCHEMA = s.SCHEMA_NAME WHERE s.SCHEMA_NAME IN ({marks}) "
            "GROUP BY s.SCHEMA_NAME",
            list(names),
        )
        return {str(name): int(size) for name, size in rows}

    def database_comment(self, conn: DBAPIConnection, name: str) -> str | None:
        # Databases have no comments here: the template's lives in its marker table.
        if not self._has_table(conn, name, naming.COMPLETION_MARKER_TABLE):
            return None
        value = self.scalar(
            conn,
            f"SELECT comment FROM {_db(name)}.{_quote(naming.COMPLETION_MARKER_TABLE)} LIMIT 1",
        )
        return None if value is None else str(value)

    def set_template_comment(self, conn: DBAPIConnection, template: str, comment: str) -> None:
        # The marker table is never copied, so neither is what it says.
        self._execute(
            conn,
            f"UPDATE {_db(template)}.{_quote(naming.COMPLETION_MARKER_TABLE)} SET comment = %s",
            (comment,),
        )

    def database_created(
        self, conn: DBAPIConnection, names: Sequence[str]
    ) -> dict[str, dt.datetime]:
        # Databases have no creation time here; their tables' files do. A kept copy's
        # tables were moved when it was kept, so its age counts from then.
        if not names:
            return {}
        marks = ", ".join(["%s"] * len(names))
        rows = self.rows(
            conn,
            "SELECT TABLE_SCHEMA, UNIX_TIMESTAMP(MIN(CREATE_TIME)) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA IN ({marks}) AND CREATE_TIME IS NOT NULL GROUP BY TABLE_SCHEMA",
            list(names),
        )
        return {
            str(name): dt.datetime.fromtimestamp(float(stamp), dt.UTC)
            for name, stamp in rows
            if stamp is not None
        }

    # -- reading a database's objects ------------------------------------------------
    def schema_objects(self, conn: DBAPIConnection, database: str) -> SchemaObjects:
        """Every object of ``database`` as DDL that re-creates it in another one.

        Read with ``database`` as the current database, so the server leaves names
        in views unqualified (and any qualifier left is stripped): a copied view then
        reads the copy's own tables, not the original's.
        """
        quoted = _db(database)
        charset_row = self._first_row(
            conn,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (database,),
        )
        if not charset_row:
            raise FreshDBError(f"database {database} does not exist")
        marker_tables = {naming.COMPLETION_MARKER_TABLE, naming.COMPLETION_MARKER_PENDING_TABLE}
        kinds = self.rows(
            conn,
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (database,),
        )

        def unqualified(ddl: str) -> str:
            return ddl.replace(quoted + ".", "")

        self._execute(conn, f"USE {quoted}")
        try:
            tables: list[tuple[str, str]] = []
            sequences: list[tuple[str, str, int]] = []
            views: list[tuple[str, str]] = []
            for name, kind in ((str(n), str(k)) for n, k in kinds):
                if name in marker_tables:
                    continue
                if kind == "VIEW":
                    views.append((name, unqualified(self._show(conn, "VIEW", name, 1))))
                elif kind == "SEQUENCE":
                    next_value = int(
                        self.scalar(conn, f"SELECT next_not_cached_value FROM {_quote(name)}")
                    )
                    ddl = self._show(conn, "SEQUENCE", name, 1)
                    sequences.append((name, unqualified(ddl), next_value))
                else:
                    tables.append((name, unqualified(self._show(conn, "TABLE", name, 1))))
            programs: list[tuple[str, str | None, str]] = []
            for kind, names in self._programs(conn, database):
                for name in names:
                    row = self._first_row(conn, f"SHOW CREATE {kind} {_quote(name)}")
                    # Routines and triggers: (name, sql_mode, DDL, ...); events:
                    # (name, sql_mode, time_zone, DDL, ...).
                    if kind == "EVENT":
                        programs.append((str(row[1]), str(row[2]), unqualified(str(row[3]))))
                    else:
                        programs.append((str(row[1]), None, unqualified(str(row[2]))))
        finally:
            self._execute(conn, _LEAVE_DATABASE[0])
        return SchemaObjects(
            character_set=str(charset_row[0]),
            collation=str(charset_row[1]),
            tables=tuple(tables),
            sequences=tuple(sequences),
            views=tuple(order_views(views)),
            programs=tuple(programs),
        )

    def _programs(self, conn: DBAPIConnection, database: str) -> Iterable[tuple[str, list[str]]]:
        routines = self.rows(
            conn,
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (database,),
        )
        yield "PROCEDURE", [str(n) for t, n in routines if str(t) == "PROCEDURE"]
        yield "FUNCTION", [str(n) for t, n in routines if str(t) == "FUNCTION"]
        # Triggers of one table and timing fire in creation order: keep it.
        triggers = self.rows(
            conn,
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
            (database,),
        )
        yield "TRIGGER", [str(row[0]) for row in triggers]
        events = self.rows(
            conn,
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
            "ORDER BY EVENT_NAME",
            (database,),
        )
        yield "EVENT", [str(row[0]) for row in events]

    def _show(self, conn: DBAPIConnection, kind: str, name: str, column: int) -> str:
        return str(self._first_row(conn, f"SHOW CREATE {kind} {_quote(name)}")[column])

    def _has_table(self, conn: DBAPIConnection, database: str, table: str) -> bool:
        return bool(
            self.scalar(
                conn,
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s",
                (database, table),
            )
        )

    # -- running statements -----------------------------------------------------------
    def _execute(
        self, conn: DBAPIConnection, sql: str, params: Sequence[Any] | None = None
    ) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
        finally:
            cursor.close()

    def _first_row(
        self, conn: DBAPIConnection, sql: str, params: Sequence[Any] | None = None
    ) -> list[Any]:
        rows = self.rows(conn, sql, params)
        return list(rows[0]) if rows else []

    def _run_script(self, conn: DBAPIConnection, statements: Sequence[str]) -> None:
        """Run statements in as few round trips as they allow (the connection allows
        multi-statements): one, plus one per :class:`ProgramDefinition`, which must end
        its round trip.

        A newline before each ``;`` ends any ``--`` comment a routine body ends with.
        The server stops at the first failing statement; its error is raised here.
        """
        batch: list[str] = []
        for index, statement in enumerate(statements):
            batch.append(statement)
            if isinstance(statement, ProgramDefinition) or index == len(statements) - 1:
                self._run_batch(conn, batch)
                batch = []

    @staticmethod
    def _run_batch(conn: DBAPIConnection, statements: Sequence[str]) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute("\n;\n".join(statements))
            while cursor.nextset():
                pass
        finally:
            cursor.close()


# Leaving a database for a neutral one: a connection whose current database is a
# copy would be killed by that copy's DROP (there is no "USE nothing").
_LEAVE_DATABASE = ("USE information_schema",)
