"""Which psycopg errors mean what: SQLSTATEs, and the server's words where there is none.

The messages themselves are shared with MySQL (:mod:`freshdb.dialects.server_errors`).
"""

from __future__ import annotations

from freshdb.dialects import server_errors
from freshdb.errors import ConfigurationError

# What the server says when max_connections is reached (SQLSTATE 53300), to anyone
# and to all but superusers (the wording changed in Postgres 16).
_TOO_MANY_CONNECTIONS = (
    "too many clients already",
    "remaining connection slots are reserved",
)
# What it says when it refuses to let the user in (28P01, 28000): retrying won't help.
_CREDENTIALS_REFUSED = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # role "x" (or the admin database) does not exist
    "is not permitted to log in",
)


def translate_error(exc: BaseException) -> Exception | None:
    """A ``FreshDBError`` for a psycopg error freshdb can explain, else ``None``."""
    import psycopg
    from psycopg import errors as pg_errors

    text = str(exc)
    message = server_errors.first_line(text, exc)
    # Refused while connecting, psycopg raises a plain OperationalError with no
    # SQLSTATE: the server's words are all there is to go by.
    if isinstance(exc, pg_errors.TooManyConnections) or any(
        words in text for words in _TOO_MANY_CONNECTIONS
    ):
        return server_errors.too_many_connections("the Postgres server", message)
    if isinstance(exc, pg_errors.DiskFull) or "No space left on device" in text:
        return server_errors.out_of_room(f"the server's tmpfs is full ({message})")
    if isinstance(exc, psycopg.Error) and message.startswith("checkpoint request failed"):
        # CREATE DATABASE ... FILE_COPY and DROP DATABASE force a checkpoint; when
        # the checkpointer cannot write its next WAL file the client sees only this
        # (the server log has "No space left on device"). On tmpfs with fsync off,
        # running out of space is what makes a checkpoint fail.
        return server_errors.out_of_room(
            f"the server could not write a checkpoint ({message}): its tmpfs is most likely full"
        )
    if isinstance(exc, pg_errors.InvalidPassword | pg_errors.InvalidAuthorizationSpecification) or (
        text.startswith("connection failed")
        and any(words in text for words in _CREDENTIALS_REFUSED)
    ):
        return server_errors.credentials_refused(
            f"the Postgres server rejected the credentials ({message})"
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ConfigurationError(
            f"the Postgres user lacks a privilege freshdb needs ({message}) — it must be "
            "allowed to create databases (CREATEDB)"
        )
    if isinstance(exc, psycopg.OperationalError):
        return server_errors.unreachable(f"cannot reach the Postgres server ({message})")
    return None
