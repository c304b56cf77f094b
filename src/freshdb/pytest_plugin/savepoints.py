"""Savepoint mode: a test runs inside a transaction of the worker's shared copy.

The transaction is rolled back after the test, so the next test on the same copy
starts from the template's state — unless the test ended that transaction itself:
a ``COMMIT`` (raw, or ``commit()`` on the connection), or on MySQL/MariaDB any
statement that commits implicitly (``CREATE TABLE``, ``ALTER``, ``TRUNCATE``, ...).
What it wrote before then is committed for good. :class:`SavepointTest` notices it:
a savepoint set at the start of the test exists only as long as the transaction that
set it, so after the test, rolling back to it fails exactly when that transaction
ended.
"""

from __future__ import annotations

import enum

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

# Set by freshdb at the start of each test; SQLAlchemy's own are named sa_savepoint_N.
START_SAVEPOINT = "freshdb_test_start"

ENDED_TRANSACTION_MESSAGE = (
    "freshdb savepoint mode: this test ended the transaction it runs in — a COMMIT "
    "(raw SQL, or commit() on freshdb_transaction), or on MySQL/MariaDB a statement that "
    "commits implicitly (CREATE/ALTER/DROP TABLE, TRUNCATE, ...). What it wrote until then "
    "was committed to this worker's shared copy and would have leaked into the tests after "
    "it, so the copy has been replaced by a fresh one. Use the `freshdb` fixture (a "
    "database of the test's own) for tests that commit or run DDL; in savepoint mode, let "
    "code commit only through freshdb_session (its commit() stays inside the test)."
)


class Outcome(enum.Enum):
    """How a savepoint-mode test left its transaction."""

    #: Still inside it: everything was rolled back, the copy is as the template.
    ROLLED_BACK = "rolled back"
    #: It called rollback() on the connection: nothing it wrote before stays, but what
    #: ran afterwards ran outside freshdb's savepoint, so the copy is replaced anyway.
    LEFT = "left"
    #: It committed (explicitly or implicitly): its writes outlived the test.
    COMMITTED = "committed"


class SavepointTest:
    """One test's outer transaction on ``connection``, and how the test left it."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._committed = False
        event.listen(connection, "commit", self._on_commit)
        self.outer = connection.begin()
        connection.exec_driver_sql(f"SAVEPOINT {START_SAVEPOINT}")

    def _on_commit(self, connection: Connection) -> None:
        self._committed = True

    def end(self) -> Outcome:
        """Roll back whatever the test left open; say whether its writes escaped."""
        connection = self.connection
        event.remove(connection, "commit", self._on_commit)
        if self._committed:
            outcome = Outcome.COMMITTED
        elif not self.outer.is_active:
            outcome = Outcome.LEFT
        else:
            try:
                connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {START_SAVEPOINT}")
                outcome = Outcome.ROLLED_BACK
            except DBAPIError as exc:
                # The savepoint went with the transaction that set it. A connection
                # lost meanwhile says nothing about a commit, but the copy is suspect.
                outcome = Outcome.LEFT if exc.connection_invalidated else Outcome.COMMITTED
            except SQLAlchemyError:  # closed by the test
                outcome = Outcome.LEFT
        try:
            if connection.in_transaction():
                connection.rollback()
        except SQLAlchemyError:
            if outcome is Outcome.ROLLED_BACK:
                outcome = Outcome.LEFT
        return outcome
