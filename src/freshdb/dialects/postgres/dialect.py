"""The Postgres :class:`~freshdb.dialects.base.Dialect`: the server, and databases.

Its ownership and template locks come from :class:`~.locks.PostgresLocks` (advisory
locks), which it extends; beside it are :mod:`.errors` and :mod:`.copier` (cloning,
and what a clone does not carry).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from freshdb.config import Settings
from freshdb.dialects.base import (
    ContainerSpec,
    CopyRecipe,
    DBAPIConnection,
    ServerAddress,
    ServerDefaults,
)
from freshdb.dialects.postgres import copier, direct_start, errors
from freshdb.dialects.postgres.locks import PostgresLocks
from freshdb.dialects.postgres.statements import as_psycopg, identifier
from freshdb.dialects.versions import Flavour
from freshdb.errors import FreshDBError
from freshdb.naming import APPLICATION_NAME, database_like_pattern

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

IDLE_SESSION_TIMEOUT_MAJOR = 14  # the idle_session_timeout setting
# Bounded I/O on every admin connection. A server that is busy still acknowledges
# packets and answers keepalive probes from its kernel, so none of these can cut a
# long legitimate statement (a big CREATE DATABASE, a lock wait); they end a
# connection whose server host or network is gone, instead of leaving it hanging
# for the kernel's defaults (two hours for keepalives, ~15 minutes of
# retransmissions). An idle connection is probed after 10 s, then every 5 s, and
# given up after 3 unanswered probes; sent data unacknowledged for 30 s ends it.
_KEEPALIVE_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}


class PostgresDialect(PostgresLocks):
    """Postgres 13 or newer."""

    family = "postgres"
    sqlalchemy_name = "postgresql"
    defaults = ServerDefaults(5432, "postgres", "postgres", {"postgres": "postgres:17"})

    def container_spec(self, settings: Settings, image: str, password: str) -> ContainerSpec:
        tuning = {
            # Durability is worthless for test data; these make writes memory-speed.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "max_connections": str(settings.max_connections),
            # Few, cheap checkpoints: every DROP DATABASE forces one anyway.
            "checkpoint_timeout": "1h",
            "max_wal_size": "4GB",
        }
        command: list[str] = []
        for key, value in tuning.items():
            command += ["-c", f"{key}={value}"]
        return ContainerSpec(
            port=self.defaults.port,
            environment={
                "POSTGRES_USER": self.defaults.user,
                "POSTGRES_PASSWORD": password,
                "POSTGRES_DB": self.defaults.admin_database,
                # An md5 line in pg_hba.conf accepts md5 and SCRAM passwords alike;
                # prepare_new_server then stores the password in a cheap form.
                "POSTGRES_HOST_AUTH_METHOD": "md5",
            },
            command=command,
            admin_user=self.defaults.user,
            admin_database=self.defaults.admin_database,
            password_variables=("POSTGRES_PASSWORD",),
            data_directory="/var/lib/postgresql/data",
            # initdb, then the server: no temporary set-up server (~0.2 s); the
            # official entrypoint whenever that would not end the same way.
            entrypoint=direct_start.ENTRYPOINT if settings.direct_start else (),
        )

    def sync_url(self, address: ServerAddress, database: str | None = None) -> URL:
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg",
            username=address.user,
            password=address.password,
            host=address.host,
            port=address.port,
            database=database or address.admin_database,
        )

    def warm_url(self, address: ServerAddress, database: str) -> URL:
        # connect_timeout bounds only connecting (the whole handshake).
        return self.sync_url(address, database).update_query_dict({"connect_timeout": "10"})

    def async_url(self, address: ServerAddress, database: str | None = None) -> URL:
        # SQLAlchemy's psycopg dialect serves both: create_async_engine picks the async one.
        return self.sync_url(address, database)

    def connect(
        self, address: ServerAddress, database: str | None = None, timeout: float = 10.0
    ) -> DBAPIConnection:
        import psycopg

        with self.explained_errors(psycopg.Error):
            conn = psycopg.connect(
                host=address.host,
                port=address.port,
                user=address.user,
                password=address.password,
                dbname=database or address.admin_database,
                autocommit=True,
                # Bounds the whole handshake, so connecting to a paused server
                # (whose kernel still accepts the TCP connection) fails in time.
                connect_timeout=max(2, math.ceil(timeout)),
                application_name=APPLICATION_NAME,
                **_KEEPALIVE_OPTIONS,
            )
            # Admin connections live as long as the session and sit idle between
            # uses (the lease above all): a server-wide idle limit (an external
            # server's, say) must not end them, or the session would look dead and
            # its copies be reaped under its tests. (Off in one round trip; the
            # version is known from the handshake.)
            off = "SET idle_in_transaction_session_timeout = 0"
            if conn.info.server_version // 10000 >= IDLE_SESSION_TIMEOUT_MAJOR:
                off += "; SET idle_session_timeout = 0"
            try:
                conn.execute(off.encode())
            except BaseException:
                conn.close()
                raise
            return conn

    def prepare_new_server(self, address: ServerAddress) -> None:
        """Store the admin password so that logging in is cheap.

        Every test connects at least once, and SCRAM with its default 4096 hash
        iterations costs milliseconds per connection on both ends. This server is on
        loopback with a random password, so a single iteration (Postgres 16+) or md5
        (older) is enough, and saves ~3 ms or more per connection.
        """
        from psycopg import sql

        conn = self.connect(address)
        try:
            if self._major(conn) >= 16:
                as_psycopg(conn).execute("SET scram_iterations = 1")
            else:
                as_psycopg(conn).execute("SET password_encryption = 'md5'")
            as_psycopg(conn).execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(address.user), sql.Literal(address.password)
                )
            )
        finally:
            conn.close()

    def require_password_iterations(
        self, conn: DBAPIConnection, address: ServerAddress, iterations: int
    ) -> None:
        """Re-hash the admin password with ``iterations`` if it is stored with fewer.

        Only ever raises the count (never lowers it for a session that asked for more);
        connections already open are not affected, and libpq-based drivers accept any
        count, so other sessions only pay the slower login of a stock server.
        """
        from psycopg import sql

        stored = self.rows(
            conn, "SELECT rolpassword FROM pg_authid WHERE rolname = current_user", ()
        )
        match = re.match(r"SCRAM-SHA-256\$(\d+):", str(stored[0][0] or "")) if stored else None
        if match is None or int(match[1]) >= iterations:
            return  # md5 (Postgres 15 and older) or already strong enough
        pg = as_psycopg(conn)
        pg.execute(sql.SQL("SET scram_iterations = {}").format(sql.Literal(iterations)))
        pg.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(address.user), sql.Literal(address.password)
            )
        )
        pg.execute("RESET scram_iterations")

    def server_version(self, conn: DBAPIConnection) -> str:
        return f"postgres {self._major(conn)}"

    def server_identity(self, conn: DBAPIConnection) -> str | None:
        # Generated by initdb from the time and its pid: another data directory (a
        # foreign server, or a container created again) has another one.
        return str(self.scalar(conn, "SELECT system_identifier FROM pg_control_system()"))

    def server_release(self, conn: DBAPIConnection) -> tuple[Flavour, tuple[int, ...]]:
        number = as_psycopg(conn).info.server_version
        if number >= 100000:  # 17.12 is 170012; before 10, 9.6.24 was 90624
            return "postgres", (number // 10000, number % 10000)
        return "postgres", (number // 10000, number // 100 % 100, number % 100)

    @staticmethod
    def _major(conn: DBAPIConnection) -> int:
        return as_psycopg(conn).info.server_version // 10000

    def translate_error(self, exc: BaseException) -> Exception | None:
        return errors.translate_error(exc)

    # -- databases --------------------------------------------------------------
    def list_databases(self, conn: DBAPIConnection, prefix: str) -> list[str]:
        rows = self.rows(
            conn,
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname",
            (database_like_pattern(prefix),),
        )
        return [str(row[0]) for row in rows]

    def database_exists(self, conn: DBAPIConnection, name: str) -> bool:
        return bool(self.scalar(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))

    def create_database(self, conn: DBAPIConnection, name: str) -> None:
        from psycopg import sql

        as_psycopg(conn).execute(sql.SQL("CREATE DATABASE {}").format(identifier(name)))

    def drop_database(self, conn: DBAPIConnection, name: str) -> None:
        from psycopg import sql

        ident = identifier(name)
        is_template = self.scalar(
            conn, "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        )
        if is_template:
            as_psycopg(conn).execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident))
        as_psycopg(conn).execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))

    def template_is_complete(self, conn: DBAPIConnection, template: str) -> bool:
        # A template only ever gets its name by the final, atomic rename.
        return self.database_exists(conn, template)

    def build_database_name(self, template: str, build: str) -> str:
        return build

    def complete_template(
        self, conn: DBAPIConnection, build: str, template: str, comment: str
    ) -> None:
        from psycopg import sql

        ident = identifier(build)
        # Sealed: nobody's connection can ever block cloning it (SQLSTATE 55006).
        as_psycopg(conn).execute(
            sql.SQL("ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false").format(ident)
        )
        as_psycopg(conn).execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(comment))
        )
        # The rename is the commit point: only a complete template bears the name.
        self.rename_database(conn, build, template)

    def copy_recipe(self, conn: DBAPIConnection, template: str) -> copier.PostgresCopyRecipe:
        return copier.copy_recipe(conn, template, self._major(conn))

    def clone(self, conn: DBAPIConnection, recipe: CopyRecipe, name: str) -> None:
        if not isinstance(recipe, copier.PostgresCopyRecipe):
            raise FreshDBError(f"the copy recipe of {recipe.template} was not made by Postgres")
        copier.clone(conn, recipe, name)

    def copy_database(self, conn: DBAPIConnection, source: str, name: str, timeout: float) -> None:
        self._wait_until_unconnected(conn, source, timeout)
        super().copy_database(conn, source, name, timeout)

    def _wait_until_unconnected(self, conn: DBAPIConnection, name: str, timeout: float) -> None:
        # CREATE DATABASE … TEMPLATE refuses a source anyone is connected to; a
        # connection just closed may linger a moment, a user's open one never ends by
        # itself (and is never ended by freshdb: it may hold the user's work).
        count = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        waiting = Retrying(
            retry=retry_if_result(lambda others: others > 0),
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.1),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else 1,
        )
        others = int(waiting(lambda: int(self.scalar(conn, count, (name,)) or 0)))
        if others:
            raise FreshDBError(
                f"cannot snapshot database {name}: {others} other connection"
                f"{'' if others == 1 else 's'} to it stayed open for {timeout:.0f} s, and "
                "Postgres copies only a database nobody is connected to — commit and close "
                "them first (connections checked out of db.engine(); an async engine's "
                "with `await engine.dispose()`; your own drivers' connections)"
            )

    def rename_database(self, conn: DBAPIConnection, old: str, new: str) -> None:
        from psycopg import errors as pg_errors
        from psycopg import sql

        # Backends of connections just closed can linger a moment; nobody else may
        # stay connected to a database being renamed.
        as_psycopg(conn).execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (old,),
        )
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(identifier(old), identifier(new))
        for attempt in Retrying(
            retry=retry_if_exception_type(pg_errors.ObjectInUse),
            stop=stop_after_attempt(50),
            wait=wait_fixed(0.05),
            reraise=True,
        ):
            with attempt:
                as_psycopg(conn).execute(rename)

    def database_sizes(self, conn: DBAPIConnection, names: Sequence[str]) -> dict[str, int]:
        rows = self.rows(
            conn,
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
            (list(names),),
        )
        return {str(name): int(size) for name, size in rows}

    def database_comment(self, conn: DBAPIConnection, name: str) -> str | None:
        value = self.scalar(
            conn,
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        )
        return None if value is None else str(value)

    def set_template_comment(self, conn: DBAPIConnection, template: str, comment: str) -> None:
        from psycopg import sql

        # Comments live in a shared catalog: a sealed template's can change too. The
        # comment's lock waits for clones in flight from the template (and new
        # clones queue behind it): a short, bounded wait, else the use goes unrecorded.
        with as_psycopg(conn).transaction():
            as_psycopg(conn).execute("SET LOCAL lock_timeout = '5s'")
            as_psycopg(conn).execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    identifier(template), sql.Literal(comment)
                )
            )

    def database_created(
        self, conn: DBAPIConnection, names: Sequence[str]
    ) -> dict[str, dt.datetime]:
        import psycopg

        # Postgres keeps no creation time; PG_VERSION is written when a database is
        # created (cloned or not) and never again. Reading it needs superuser or
        # pg_read_server_files: without that, ages are unknown.
        try:
            rows = self.rows(
                conn,
                "SELECT d.datname, (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification "
                "FROM pg_database d WHERE d.datname = ANY(%s)",
                (list(names),),
            )
        except psycopg.Error:
            return {}
        return {str(name): created for name, created in rows}
