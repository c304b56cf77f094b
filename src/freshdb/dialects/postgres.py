"""Postgres: tuning flags and every statement freshdb sends to a Postgres server."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from sqlalchemy.engine import URL

from freshdb.config import Settings
from freshdb.dialects.base import (
    ContainerSpec,
    CopyRecipe,
    DBAPIConnection,
    Dialect,
    ServerAddress,
    ServerUse,
)
from freshdb.dialects.versions import Flavour
from freshdb.errors import (
    ConfigurationError,
    FreshDBError,
    ServerFullError,
    ServerUnavailableError,
)
from freshdb.naming import (
    LOCK_NAMESPACE_BUILD,
    LOCK_NAMESPACE_OWNER,
    LOCK_NAMESPACE_TEMPLATE,
    check_identifier,
    database_like_pattern,
    fingerprint_lock_key,
    owner_lock_key,
)

log = logging.getLogger("freshdb")

FILE_COPY_MAJOR = 15  # CREATE DATABASE ... STRATEGY FILE_COPY
IDLE_SESSION_TIMEOUT_MAJOR = 14  # the idle_session_timeout setting
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# Settings whose value is a list of names: the server keeps them as one string with
# each element quoted as an identifier where needed (`search_path=app, "My Schema"`),
# so they must be given back element by element, or the list becomes a single name.
# The server does not expose this flag (GUC_LIST_QUOTE); pg_dump keeps the same list.
_LIST_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "shared_preload_libraries",
        "local_preload_libraries",
        "unix_socket_directories",
    }
)
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


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(check_identifier(name))


def _pg(conn: DBAPIConnection) -> psycopg.Connection[Any]:
    return cast("psycopg.Connection[Any]", conn)


class PostgresDialect(Dialect):
    """Postgres 13 or newer."""

    family = "postgres"
    engines = ("postgres",)
    sqlalchemy_name = "postgresql"
    default_port = 5432
    default_user = "postgres"
    default_admin_database = "postgres"

    def default_image(self, engine: str) -> str:
        return "postgres:17"

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
            port=5432,
            environment={
                "POSTGRES_USER": "postgres",
                "POSTGRES_PASSWORD": password,
                "POSTGRES_DB": "postgres",
                # An md5 line in pg_hba.conf accepts md5 and SCRAM passwords alike;
                # prepare_new_server then stores the password in a cheap form.
                "POSTGRES_HOST_AUTH_METHOD": "md5",
            },
            command=command,
            admin_user="postgres",
            admin_database="postgres",
            password_variables=("POSTGRES_PASSWORD",),
            data_directory="/var/lib/postgresql/data",
        )

    def sync_url(self, address: ServerAddress, database: str | None = None) -> URL:
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
        try:
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
                application_name="freshdb",
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
        except psycopg.Error as exc:
            translated = self.translate_error(exc)
            if translated is not None:
                raise translated from exc
            raise

    def prepare_new_server(self, address: ServerAddress) -> None:
        """Store the admin password so that logging in is cheap.

        Every test connects at least once, and SCRAM with its default 4096 hash
        iterations costs milliseconds per connection on both ends. This server is on
        loopback with a random password, so a single iteration (Postgres 16+) or md5
        (older) is enough, and saves ~3 ms or more per connection.
        """
        conn = self.connect(address)
        try:
            if self._major(conn) >= 16:
                _pg(conn).execute("SET scram_iterations = 1")
            else:
                _pg(conn).execute("SET password_encryption = 'md5'")
            _pg(conn).execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(address.user), sql.Literal(address.password)
                )
            )
        finally:
            conn.close()

    def server_version(self, conn: DBAPIConnection) -> str:
        return f"postgres {self._major(conn)}"

    def server_release(self, conn: DBAPIConnection) -> tuple[Flavour, tuple[int, ...]]:
        number = _pg(conn).info.server_version
        if number >= 100000:  # 17.12 is 170012; before 10, 9.6.24 was 90624
            return "postgres", (number // 10000, number % 10000)
        return "postgres", (number // 10000, number // 100 % 100, number % 100)

    @staticmethod
    def _major(conn: DBAPIConnection) -> int:
        return _pg(conn).info.server_version // 10000

    def translate_error(self, exc: BaseException) -> Exception | None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        # Refused while connecting, psycopg raises a plain OperationalError with no
        # SQLSTATE: the server's words are all there is to go by.
        if isinstance(exc, pg_errors.TooManyConnections) or any(
            words in str(exc) for words in _TOO_MANY_CONNECTIONS
        ):
            return ServerFullError(
                f"the Postgres server refused a connection: max_connections reached ({message}) "
                "— lower pool_size or the number of workers, close connections your tests "
                "leave open, or raise FRESHDB_MAX_CONNECTIONS"
            )
        if isinstance(exc, pg_errors.DiskFull) or "No space left on device" in str(exc):
            return ServerFullError(
                f"the server's tmpfs is full ({message}) — run `freshdb prune` to drop "
                "leftover copies and stale templates, lower pool_size, or raise "
                "FRESHDB_TMPFS_SIZE"
            )
        if isinstance(exc, psycopg.Error) and message.startswith("checkpoint request failed"):
            # CREATE DATABASE ... FILE_COPY and DROP DATABASE force a checkpoint; when
            # the checkpointer cannot write its next WAL file the client sees only this
            # (the server log has "No space left on device"). On tmpfs with fsync off,
            # running out of space is what makes a checkpoint fail.
            return ServerFullError(
                f"the server could not write a checkpoint ({message}): its tmpfs is most "
                "likely full — run `freshdb prune` to drop leftover copies and stale "
                "templates, lower pool_size, or raise FRESHDB_TMPFS_SIZE"
            )
        if isinstance(
            exc, pg_errors.InvalidPassword | pg_errors.InvalidAuthorizationSpecification
        ) or (
            str(exc).startswith("connection failed")
            and any(words in str(exc) for words in _CREDENTIALS_REFUSED)
        ):
            return ConfigurationError(
                f"the Postgres server rejected the credentials ({message}) — check the user "
                "and password in FRESHDB_URL / url="
            )
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return ConfigurationError(
                f"the Postgres user lacks a privilege freshdb needs ({message}) — it must be "
                "allowed to create databases (CREATEDB)"
            )
        if isinstance(exc, psycopg.OperationalError):
            return ServerUnavailableError(
                f"cannot reach the Postgres server ({message}) — is it running? For a "
                "freshdb-managed server, `freshdb status` shows it"
            )
        return None

    # -- ownership and locks ------------------------------------------------------
    def take_owner_lease(self, conn: DBAPIConnection, owner: str) -> None:
        taken = self.scalar(
            conn,
            "SELECT pg_try_advisory_lock(%s, %s)",
            (LOCK_NAMESPACE_OWNER, owner_lock_key(owner)),
        )
        if not taken:  # owner ids are random; a clash means a broken random source
            raise FreshDBError(f"owner id {owner} is already in use on this server")

    def live_owners(self, conn: DBAPIConnection, owners: Sequence[str]) -> set[str]:
        if not owners:
            return set()
        held = self.rows(
            conn,
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::oid AND objsubid = 2",
            (LOCK_NAMESPACE_OWNER,),
        )
        held_keys = {int(row[0]) for row in held}
        return {owner for owner in owners if owner_lock_key(owner) in held_keys}

    def server_use(self, conn: DBAPIConnection) -> ServerUse:
        row = self.rows(
            conn,
            "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::oid AND objsubid = 2), "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid())",
            (LOCK_NAMESPACE_OWNER,),
        )[0]
        return ServerUse(sessions=int(row[0]), connections=int(row[1]))

    def lock_template(self, conn: DBAPIConnection, fingerprint: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        told = False
        while not self.try_lock_template(conn, fingerprint):
            waited = timeout - (deadline - time.monotonic())
            if time.monotonic() > deadline:
                holder = self.template_lock_holder(conn, fingerprint) or "a session that just left"
                raise FreshDBError(
                    f"waited {timeout:.0f} s for the lock of template {fingerprint[:20]}, held "
                    f"by {holder} — it is still building or removing that template; if that "
                    "process hangs, end it (its lock goes with its connection)"
                )
            if not told and waited > 2.0:
                told = True
                log.info(
                    "waiting for the lock of template %s, held by %s",
                    fingerprint[:20],
                    self.template_lock_holder(conn, fingerprint) or "another session",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def try_lock_template(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        return bool(
            self.scalar(
                conn,
                "SELECT pg_try_advisory_lock(%s, %s)",
                (LOCK_NAMESPACE_BUILD, fingerprint_lock_key(fingerprint)),
            )
        )

    def unlock_template(self, conn: DBAPIConnection, fingerprint: str) -> None:
        self.scalar(
            conn,
            "SELECT pg_advisory_unlock(%s, %s)",
            (LOCK_NAMESPACE_BUILD, fingerprint_lock_key(fingerprint)),
        )

    def template_lock_holder(self, conn: DBAPIConnection, fingerprint: str) -> str | None:
        # pg_locks names the backend holding the advisory lock; the same backend's
        # owner lease says which freshdb session it is.
        row = self.rows(
            conn,
            "SELECT l.pid, a.application_name, a.client_addr::text, a.backend_start, "
            "(SELECT o.objid::bigint FROM pg_locks o WHERE o.pid = l.pid "
            " AND o.locktype = 'advisory' AND o.granted AND o.classid = %s::oid "
            " AND o.objsubid = 2 LIMIT 1) "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid "
            "AND l.objid = %s::oid AND l.objsubid = 2 AND l.pid <> pg_backend_pid() LIMIT 1",
            (LOCK_NAMESPACE_OWNER, LOCK_NAMESPACE_BUILD, fingerprint_lock_key(fingerprint)),
        )
        if not row:
            return None
        pid, application, client, since, owner = row[0]
        who = f"freshdb session {int(owner):08x}" if owner is not None else "a session"
        facts = [f"server pid {pid}"]
        if application:
            facts.append(f"application {application!r}")
        if client:
            facts.append(f"client {client}")
        if since is not None:
            facts.append(f"connected since {since:%Y-%m-%d %H:%M:%S %Z}".rstrip())
        return f"{who} ({', '.join(facts)})"

    def mark_template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> None:
        # Nobody ever takes this lock exclusively: a shared take never waits.
        self.scalar(
            conn,
            "SELECT pg_try_advisory_lock_shared(%s, %s)",
            (LOCK_NAMESPACE_TEMPLATE, fingerprint_lock_key(fingerprint)),
        )

    def template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        # Holding BUILD, nobody can start using it; those already using it hold a
        # shared TEMPLATE lock for as long as they live.
        users = self.scalar(
            conn,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::oid AND objid = %s::oid AND objsubid = 2",
            (LOCK_NAMESPACE_TEMPLATE, fingerprint_lock_key(fingerprint)),
        )
        return bool(users)

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
        _pg(conn).execute(sql.SQL("CREATE DATABASE {}").format(_ident(name)))

    def drop_database(self, conn: DBAPIConnection, name: str) -> None:
        ident = _ident(name)
        is_template = self.scalar(
            conn, "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        )
        if is_template:
            _pg(conn).execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident))
        _pg(conn).execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))

    def template_is_complete(self, conn: DBAPIConnection, template: str) -> bool:
        # A template only ever gets its name by the final, atomic rename.
        return self.database_exists(conn, template)

    def build_database_name(self, template: str, build: str) -> str:
        return build

    def complete_template(
        self, conn: DBAPIConnection, build: str, template: str, comment: str
    ) -> None:
        ident = _ident(build)
        # Sealed: nobody's connection can ever block cloning it (SQLSTATE 55006).
        _pg(conn).execute(
            sql.SQL("ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false").format(ident)
        )
        _pg(conn).execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(comment))
        )
        # The rename is the commit point: only a complete template bears the name.
        self.rename_database(conn, build, template)

    def copy_recipe(self, conn: DBAPIConnection, template: str) -> CopyRecipe:
        statements: list[str] = []
        # ALTER DATABASE ... SET and ALTER ROLE ... IN DATABASE ... SET: a clone has none.
        settings = self.rows(
            conn,
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE s.setrole::regrole::text END, "
            "unnest(s.setconfig) FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s "
            "ORDER BY s.setrole",
            (template,),
        )
        for role, entry in settings:
            key, _, value = str(entry).partition("=")
            if not _SETTING_NAME.match(key):
                continue
            scope: sql.Composable = sql.SQL("DATABASE {name}")
            if role is not None:
                # regrole::text is already quoted as an identifier where needed.
                scope = sql.SQL("ROLE {} IN DATABASE {{name}}").format(sql.SQL(str(role)))
            statements.append(
                sql.SQL("ALTER {} SET {} = {}")
                .format(scope, sql.Identifier(key), setting_value(key, value))
                .as_string(_pg(conn))
            )
        acl = self.scalar(
            conn, "SELECT datacl IS NOT NULL FROM pg_database WHERE datname = %s", (template,)
        )
        if acl:
            statements.append("REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            grants = self.rows(
                conn,
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, "
                "a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
                "WHERE d.datname = %s AND a.grantee <> d.datdba",
                (template,),
            )
            for grantee, privilege in grants:
                target = (
                    "PUBLIC"
                    if grantee == "PUBLIC"
                    else sql.Identifier(str(grantee).strip('"')).as_string(_pg(conn))
                )
                statements.append(f"GRANT {privilege} ON DATABASE {{name}} TO {target}")
        return CopyRecipe(
            template=template,
            statements_after_clone=tuple(statements),
            payload={"file_copy": self._major(conn) >= FILE_COPY_MAJOR},
        )

    def clone(self, conn: DBAPIConnection, recipe: CopyRecipe, name: str) -> None:
        ident = _ident(name)
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, _ident(recipe.template))
        if recipe.payload and recipe.payload.get("file_copy"):
            # Faster than WAL_LOG for small templates on tmpfs with fsync off.
            statement = sql.SQL("{} STRATEGY FILE_COPY").format(statement)
        _pg(conn).execute(statement)
        quoted = ident.as_string(_pg(conn))
        for template_statement in recipe.statements_after_clone:
            _pg(conn).execute(template_statement.replace("{name}", quoted).encode())

    def rename_database(self, conn: DBAPIConnection, old: str, new: str) -> None:
        # Backends of connections just closed can linger a moment; nobody else may
        # stay connected to a database being renamed.
        _pg(conn).execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (old,),
        )
        for attempt in range(50):
            try:
                _pg(conn).execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(old), _ident(new))
                )
                return
            except pg_errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.05)

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
        # Comments live in a shared catalog: a sealed template's can change too. The
        # comment's lock waits for clones in flight from the template (and new
        # clones queue behind it): a short, bounded wait, else the use goes unrecorded.
        with _pg(conn).transaction():
            _pg(conn).execute("SET LOCAL lock_timeout = '5s'")
            _pg(conn).execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    _ident(template), sql.Literal(comment)
                )
            )

    def database_created(
        self, conn: DBAPIConnection, names: Sequence[str]
    ) -> dict[str, dt.datetime]:
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


def setting_value(name: str, stored: str) -> sql.Composable:
    """The value of a stored database setting, as ``SET name = <this>`` must give it.

    A list setting (``search_path``) comes back as one literal per element, so
    ``app, public`` stays two schemas; any other setting is one literal, as stored.
    """
    if name.lower() not in _LIST_SETTINGS:
        return sql.Literal(stored)
    elements = split_name_list(stored) or [""]
    return sql.SQL(", ").join(sql.Literal(element) for element in elements)


def split_name_list(stored: str) -> list[str]:
    """Split a stored list of names (``app, "My ""odd"" schema", public``), unquoting."""
    elements: list[str] = []
    i, length = 0, len(stored)
    while i < length:
        while i < length and stored[i] in " \t":
            i += 1
        if i < length and stored[i] == '"':
            element, i = "", i + 1
            while i < length:
                if stored[i] == '"':
                    if stored.startswith('""', i):
                        element += '"'
                        i += 2
                        continue
                    i += 1
                    break
                element += stored[i]
                i += 1
            comma = stored.find(",", i)
        else:
            comma = stored.find(",", i)
            element = stored[i : length if comma == -1 else comma].strip()
        elements.append(element)
        if comma == -1:
            break
        i = comma + 1
    return elements
