"""Connecting to MySQL and MariaDB: URLs, and admin connections whose I/O is bounded."""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pymysql
from pymysql.constants import CLIENT

from freshdb.dialects.base import DBAPIConnection, ServerAddress

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# The longest wait_timeout both engines accept (a year): admin connections, the lease
# above all, must outlive an idle session (the default closes them after 8 hours).
_IDLE_TIMEOUT = 31536000
# Bounded I/O on admin connections. PyMySQL's read timeout bounds each wait for the
# server's answer to one statement, so it must outlast the longest legitimate one:
# a GET_LOCK wait (up to 10 minutes marking a template in use, or a builder's lock
# timeout) or one INSERT … SELECT copying a big table of a template. 15 minutes does;
# it is the last resort for a connection nobody watches; a session notices a paused
# or cut server much sooner (`stop()` and `database()` check whether it still answers).
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


def url(
    driver: str,
    address: ServerAddress,
    database: str | None,
    query: Mapping[str, str] | None = None,
) -> URL:
    """A SQLAlchemy URL for ``database`` (or the admin database) with a driver."""
    from sqlalchemy.engine import URL

    return URL.create(
        f"mysql+{driver}",
        username=address.user,
        password=address.password,
        host=address.host,
        port=address.port,
        database=database or address.admin_database or None,
        query=query or {},
    )


def connect(address: ServerAddress, database: str | None, timeout: float) -> DBAPIConnection:
    """A raw autocommit PyMySQL connection, its I/O bounded (see the timeouts above)."""
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
    # Connected: from now on a statement may legitimately take long (PyMySQL sets
    # the socket's timeout from this before every read).
    connection._read_timeout = _READ_TIMEOUT  # type: ignore[attr-defined]
    _bound_tcp(getattr(connection, "_sock", None))
    return connection


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
