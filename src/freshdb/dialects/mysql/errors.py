"""Which PyMySQL errors mean what: MySQL's and MariaDB's error numbers and wording.

The messages themselves are shared with Postgres (:mod:`freshdb.dialects.server_errors`).
"""

from __future__ import annotations

import re

import pymysql

from freshdb.dialects import server_errors
from freshdb.errors import ConfigurationError

# Error numbers (server errors from include/mysqld_error.h, client errors from errmsg.h).
_TOO_MANY_CONNECTIONS = {1040, 1203}
_ACCESS_DENIED = {1044, 1045, 1142, 1227, 1698}
# 3675: MySQL 8+ could not create a table's tablespace file ("as disk is full").
_FULL = {1021, 1037, 1041, 1114, 3675}
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055}
#: KILL of a connection that has ended meanwhile.
UNKNOWN_THREAD = 1094
# 28 is ENOSPC; MariaDB 11 reports a table it cannot create on a full disk as
# 1005 with handler error 135 ("No more room in record file").
_NO_SPACE = re.compile(
    r"errno:? ?28\b|errcode:? ?28\b|error 28\b|no space left|no more room in record file",
    re.IGNORECASE,
)


def translate_error(exc: BaseException) -> Exception | None:
    """A ``FreshDBError`` for a PyMySQL error freshdb can explain, else ``None``."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    message = server_errors.first_line(text, exc)
    if isinstance(exc, RuntimeError) and "cryptography" in str(exc):
        return ConfigurationError(
            f"connecting needs the 'cryptography' package ({exc}): MySQL 8 authenticates "
            "with caching_sha2_password — pip install 'freshdb[mysql]'"
        )
    if not isinstance(exc, pymysql.Error):
        return None
    if code in _TOO_MANY_CONNECTIONS:
        return server_errors.too_many_connections("the server", message)
    if code in _FULL or _NO_SPACE.search(text):
        return server_errors.out_of_room(f"the server ran out of space or memory ({message})")
    if code in _ACCESS_DENIED:
        return server_errors.credentials_refused(
            f"the server refused the user or an operation ({message})",
            needs="the user must be allowed to create and drop databases",
        )
    if code in _UNREACHABLE:
        return server_errors.unreachable(f"cannot reach the server ({message})")
    if isinstance(exc, pymysql.InterfaceError):
        # PyMySQL's "(0, '')": the connection was already lost by an earlier call.
        return server_errors.unreachable(
            "the connection to the server is closed (it was lost earlier)",
            question="is the server running?",
        )
    return None
