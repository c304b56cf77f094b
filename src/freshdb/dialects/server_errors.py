"""What freshdb says when a server refuses or fails: one message per situation.

Each engine's ``translate_error`` recognises its driver's errors (error numbers,
SQLSTATEs, the server's wording) and words what it found through these, so the same
situation reads the same on every engine and what to do next is written once.
"""

from __future__ import annotations

from freshdb.errors import ConfigurationError, ServerFullError, ServerUnavailableError

_MAKE_ROOM = (
    "run `freshdb prune` to drop leftover copies and stale templates, lower pool_size, "
    "or raise FRESHDB_TMPFS_SIZE"
)
_FIND_THE_SERVER = "For a freshdb-managed server, `freshdb status` shows it"


def first_line(text: str, exc: BaseException) -> str:
    """The first line of a driver's message (what follows is context), else ``repr(exc)``."""
    text = text.strip()
    return text.splitlines()[0] if text else repr(exc)


def too_many_connections(server: str, message: str) -> ServerFullError:
    """``server`` (e.g. ``"the Postgres server"``) turned a connection away: max_connections."""
    return ServerFullError(
        f"{server} refused a connection: max_connections reached ({message}) — lower "
        "pool_size or the number of workers, close connections your tests leave open, "
        "or raise FRESHDB_MAX_CONNECTIONS"
    )


def out_of_room(what: str) -> ServerFullError:
    """The server ran out of space (or memory); ``what`` says which, in the server's words."""
    return ServerFullError(f"{what} — {_MAKE_ROOM}")


def credentials_refused(what: str, needs: str | None = None) -> ConfigurationError:
    """The server refused the user; ``needs`` adds what the user must be allowed to do."""
    advice = "check the user and password in FRESHDB_URL / url="
    return ConfigurationError(f"{what} — {advice}" + (f"; {needs}" if needs else ""))


def unreachable(what: str, question: str = "is it running?") -> ServerUnavailableError:
    """The server did not answer, or the connection to it is gone."""
    return ServerUnavailableError(f"{what} — {question} {_FIND_THE_SERVER}")
