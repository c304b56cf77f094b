"""The CI template cache: templates exported to a directory, restored instead of migrated.

In CI the server is a throwaway, so every job would run the whole migration history
again. With ``template_cache = DIR`` (``FRESHDB_TEMPLATE_CACHE``, ``freshdb warm
--export DIR``), a template freshdb builds is also exported to ``DIR/<fingerprint>/``,
and a server without that template restores it from there instead of running the
migrations; the CI service's own cache keeps ``DIR`` between jobs, keyed by
``freshdb fingerprint``. A restored template is sealed exactly like a built one,
under the same build lock (see :mod:`freshdb.template`).

An entry is a dump and a manifest. The dump is made and restored by the server's
own tools inside its container, so their version always matches the server's:
``pg_dump -Fc`` / ``pg_restore`` on Postgres; ``mariadb-dump`` or ``mysqldump`` /
the ``mariadb`` or ``mysql`` client on MySQL and MariaDB (tables, rows, views,
routines, triggers and events). Database-level facts a dump of one database leaves
out are kept in the manifest: Postgres ``ALTER DATABASE … SET`` settings and grants,
MySQL's default character set and collation. An external server has no container
of freshdb's: the cache is not used there (a warning says so).

Nothing is restored that is not known good: the manifest must name the same
fingerprint, engine family and major server version, and the dump must have the
recorded size and sha256. Any other entry (corrupt, truncated, made by another
server) is ignored with a warning, the migrations run, and the export that follows
replaces it. A restore that fails midway is dropped, and the migrations run.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from freshdb import naming
from freshdb._version import __version__
from freshdb.backends.base import ServerBackend
from freshdb.config import Settings
from freshdb.dialects import dialect_for, versions
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import ConfigurationError, FreshDBError
from freshdb.migrators import Migrator
from freshdb.template import TemplateFingerprint

log = logging.getLogger("freshdb")

#: The manifest's file name in an entry's directory.
MANIFEST_NAME = "manifest.json"
#: The layout of entries this freshdb writes and reads; others are ignored.
FORMAT_VERSION = 1
_CHUNK = 1 << 20
_CHARSET_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class CacheEntryError(FreshDBError):
    """A cache entry that must not be restored (corrupt, or made for another server)."""


@dataclasses.dataclass(frozen=True)
class CacheManifest:
    """What an entry holds, and what it was made from: checked before any restore."""

    #: The template fingerprint's digest (the entry's directory name).
    fingerprint: str
    #: ``"postgres"`` or ``"mysql"``: the engine family whose tools made the dump.
    family: str
    #: The server version the fingerprint names: ``"postgres 17"``, ``"mariadb 10.11"``.
    server_version: str
    #: The exact release that made it (for people reading the manifest).
    server_release: str
    #: The dump's file name in the entry's directory.
    dump: str
    sha256: str
    size: int
    created: str
    migrator: str
    #: Postgres: statements re-applying database-level settings and grants, with a
    #: ``{name}`` placeholder for the database (a dump of one database has none).
    database_statements: tuple[str, ...] = ()
    #: MySQL: the database's default character set and collation.
    character_set: str | None = None
    collation: str | None = None
    freshdb_version: str = __version__
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest file's text."""
        document = dataclasses.asdict(self)
        document["database_statements"] = list(self.database_statements)
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CacheManifest:
        """Read a manifest; :class:`CacheEntryError` if it is not one this freshdb reads."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise CacheEntryError(f"its manifest is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise CacheEntryError("its manifest is not a JSON object")
        if document.get("format") != FORMAT_VERSION:
            raise CacheEntryError(
                f"its manifest has format {document.get('format')!r}, this freshdb reads "
                f"{FORMAT_VERSION}"
            )
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, value in document.items():
            if name not in fields:
                continue  # a newer freshdb's extra facts: not needed to restore
            values[name] = value
        try:
            statements = values.get("database_statements", [])
            if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
                raise TypeError("database_statements must be a list of strings")
            values["database_statements"] = tuple(statements)
            manifest = cls(**values)
        except TypeError as exc:
            raise CacheEntryError(f"its manifest is incomplete ({exc})") from None
        for name in ("fingerprint", "family", "server_version", "dump", "sha256"):
            if not isinstance(getattr(manifest, name), str):
                raise CacheEntryError(f"its manifest's {name} is not a string")
        if not isinstance(manifest.size, int) or manifest.size < 0:
            raise CacheEntryError("its manifest's size is not a byte count")
        if Path(manifest.dump).name != manifest.dump or manifest.dump in ("", ".", ".."):
            raise CacheEntryError(f"its manifest names the dump {manifest.dump!r}, not a file")
        return manifest


def refusal(manifest: CacheManifest, wanted: TemplateFingerprint) -> str | None:
    """Why an entry's manifest does not fit the template wanted, or None if it does."""
    if manifest.fingerprint != wanted.digest:
        return f"it holds template {manifest.fingerprint[:20]}, not {wanted.digest[:20]}"
    if manifest.family != wanted.family:
        return f"it was made by {manifest.family}, this server is {wanted.family}"
    if manifest.server_version != wanted.server_version:
        return f"it was made by {manifest.server_version}, this server is {wanted.server_version}"
    return None


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's contents."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


# -- the engines' dump tools ----------------------------------------------------------
class DumpTool(abc.ABC):
    """How one engine family dumps one database and restores it, inside its container."""

    #: The dump's file name in an entry.
    dump_name: str

    @abc.abstractmethod
    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        """The program (and its environment) writing the dump of ``database`` to stdout."""

    @abc.abstractmethod
    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        """The program (and its environment) restoring a dump from stdin into ``database``."""

    def describe_database(
        self, dialect: Dialect, conn: DBAPIConnection, database: str
    ) -> dict[str, Any]:
        """Manifest fields for what a dump of ``database`` leaves out."""
        return {}

    def restore_prologue(self, manifest: CacheManifest) -> bytes:
        """What the restoring program reads before the dump."""
        return b""

    @abc.abstractmethod
    def after_restore(
        self, dialect: Dialect, conn: DBAPIConnection, database: str, manifest: CacheManifest
    ) -> None:
        """Re-apply what the dump left out (run on the admin connection)."""


class PostgresDumpTool(DumpTool):
    """``pg_dump -Fc`` and ``pg_restore``, over the container's Unix socket.

    The socket, as ``freshdb shell`` uses: the official image trusts it, while its
    TCP lines may expect another password format than the one freshdb stores.
    """

    dump_name = "template.pgdump"

    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        command = ["pg_dump", "--format=custom", "--no-sync", "-U", address.user, "-d", database]
        return command, {"PGPASSWORD": address.password}

    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        # Stop at the first error: a partial restore is dropped, never sealed.
        command = ["pg_restore", "--exit-on-error", "-U", address.user, "-d", database]
        return command, {"PGPASSWORD": address.password}

    def describe_database(
        self, dialect: Dialect, conn: DBAPIConnection, database: str
    ) -> dict[str, Any]:
        # The same statements a copy gets after its clone: settings and grants.
        from freshdb.dialects.postgres.copier import PostgresCopyRecipe

        recipe = dialect.copy_recipe(conn, database)
        assert isinstance(recipe, PostgresCopyRecipe)
        return {"database_statements": tuple(recipe.statements_after_clone)}

    def after_restore(
        self, dialect: Dialect, conn: DBAPIConnection, database: str, manifest: CacheManifest
    ) -> None:
        if not manifest.database_statements:
            return
        # Exactly as a clone applies them (the dialect's own clone step does this).
        quoted = '"' + naming.check_identifier(database) + '"'
        cursor = conn.cursor()
        try:
            for statement in manifest.database_statements:
                cursor.execute(statement.replace("{name}", quoted).encode())
        finally:
            cursor.close()


# MariaDB 11 images ship only the mariadb-* names, MySQL images only the mysql ones.
_FIRST_OF = 'for p in {names}; do if command -v "$p" >/dev/null 2>&1; then exec "$p" "$@"; fi; done; echo "none of {names} in the image" >&2; exit 127'  # noqa: E501


class MySQLDumpTool(DumpTool):
    """``mariadb-dump``/``mysqldump`` and the ``mariadb``/``mysql`` client, over TCP."""

    dump_name = "template.sql"

    def dump_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        script = _FIRST_OF.format(names="mariadb-dump mysqldump")
        command = [
            "sh",
            "-c",
            script,
            "dump",
            "-h",
            "127.0.0.1",
            "-u",
            address.user,
            "--single-transaction",
            "--skip-lock-tables",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--no-create-db",
            "--skip-comments",
            "--default-character-set=utf8mb4",
            # Never the completion marker: a restored template is complete only once
            # freshdb seals it, as a built one.
            f"--ignore-table={database}.{naming.COMPLETION_MARKER_TABLE}",
            f"--ignore-table={database}.{naming.COMPLETION_MARKER_PENDING_TABLE}",
            database,
        ]
        return command, {"MYSQL_PWD": address.password}

    def restore_command(
        self, address: ServerAddress, database: str
    ) -> tuple[list[str], dict[str, str]]:
        script = _FIRST_OF.format(names="mariadb mysql")
        command = [
            "sh",
            "-c",
            script,
            "client",
            "-h",
            "127.0.0.1",
            "-u",
            address.user,
            "--default-character-set=utf8mb4",
            database,
        ]
        return command, {"MYSQL_PWD": address.password}

    def describe_database(
        self, dialect: Dialect, conn: DBAPIConnection, database: str
    ) -> dict[str, Any]:
        row = dialect.rows(
            conn,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (database,),
        )
        if not row:
            raise FreshDBError(f"database {database} does not exist")
        return {"character_set": str(row[0][0]), "collation": str(row[0][1])}

    def after_restore(
        self, dialect: Dialect, conn: DBAPIConnection, database: str, manifest: CacheManifest
    ) -> None:
        """Nothing: the prologue set the character set, the dump made the rest."""

    def restore_prologue(self, manifest: CacheManifest) -> bytes:
        if not manifest.character_set or not manifest.collation:
            return b""
        for name in (manifest.character_set, manifest.collation):
            if not _CHARSET_NAME.match(name):
                raise CacheEntryError(f"its manifest names the character set {name!r}")
        # The restoring client's current database is the template being restored.
        return (
            f"ALTER DATABASE CHARACTER SET {manifest.character_set} COLLATE {manifest.collation};\n"
        ).encode()


def dump_tool_for(family: str) -> DumpTool:
    """The dump tool of an engine family."""
    return PostgresDumpTool() if family == "postgres" else MySQLDumpTool()


# -- the cache ---------------------------------------------------------------------------
class TemplateCache:
    """A directory of exported templates, for one server (inside its container)."""

    def __init__(
        self,
        directory: Path,
        dialect: Dialect,
        backend: ServerBackend,
        address: ServerAddress,
    ) -> None:
        self.directory = directory
        self.dialect = dialect
        self.backend = backend
        self.address = address
        self.tool = dump_tool_for(dialect.family)

    def entry(self, fingerprint: TemplateFingerprint) -> Path:
        """The directory of the entry for a template."""
        return self.directory / fingerprint.digest

    def check_entry(
        self, fingerprint: TemplateFingerprint, *, checksum: bool = True
    ) -> CacheManifest:
        """The entry's manifest if it may be restored; :class:`CacheEntryError` says why not.

        Without ``checksum``, the dump's size is checked but not its contents: enough to
        tell whether an export is needed, never enough to restore.
        """
        entry = self.entry(fingerprint)
        try:
            text = (entry / MANIFEST_NAME).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CacheEntryError(f"it has no {MANIFEST_NAME}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheEntryError(f"its manifest cannot be read ({exc})") from None
        manifest = CacheManifest.from_json(text)
        reason = refusal(manifest, fingerprint)
        if reason is not None:
            raise CacheEntryError(reason)
        dump = entry / manifest.dump
        try:
            size = dump.stat().st_size
        except OSError:
            raise CacheEntryError(f"its dump {manifest.dump} is missing") from None
        if size != manifest.size:
            raise CacheEntryError(f"its dump has {size} bytes, the manifest says {manifest.size}")
        if checksum and file_sha256(dump) != manifest.sha256:
            raise CacheEntryError("its dump does not match the manifest's sha256 (corrupt)")
        return manifest

    def restore(
        self, conn: DBAPIConnection, database: str, fingerprint: TemplateFingerprint
    ) -> bool:
        """Restore the cached template into the empty ``database``; False if there is none.

        Called holding the template's build lock. On False, ``database`` exists and is
        empty again: the caller runs the migrations in it. Every reason not to restore
        is logged (a warning for an entry that is there but unusable).
        """
        entry = self.entry(fingerprint)
        if not entry.exists():
            log.info("template cache %s has no entry for %s", self.directory, entry.name[:20])
            return False
        try:
            manifest = self.check_entry(fingerprint)
        except CacheEntryError as exc:
            log.warning(
                "ignoring the template cache entry %s: %s — running the migrations instead "
                "(the template then built replaces the entry)",
                entry,
                exc,
            )
            return False
        started = time.perf_counter()
        log.info("restoring template %s from the cache %s", fingerprint.digest[:20], entry)
        try:
            command, environment = self.tool.restore_command(self.address, database)
            with (entry / manifest.dump).open("rb") as dump:
                source = _Concatenated(self.tool.restore_prologue(manifest), dump)
                result = self.backend.run_in_server(command, environment, stdin=source)
            if result.exit_code != 0:
                raise FreshDBError(
                    f"{command[0]} exited {result.exit_code}: {_last_lines(result.stderr)}"
                )
            self.tool.after_restore(self.dialect, conn, database, manifest)
        except Exception as exc:
            log.warning(
                "restoring the template from the cache entry %s failed (%s) — running the "
                "migrations instead",
                entry,
                exc,
            )
            self.dialect.drop_database(conn, database)
            self.dialect.create_database(conn, database)
            return False
        log.info("template restored from the cache in %.2f s", time.perf_counter() - started)
        return True

    def export(
        self,
        conn: DBAPIConnection,
        database: str,
        fingerprint: TemplateFingerprint,
        migrator: str,
    ) -> bool:
        """Export ``database`` (a template's build, or a copy of it) as the entry for
        ``fingerprint``, replacing an unusable one. Never fails the session: a failure
        is a warning (the next job migrates again)."""
        try:
            self._export(conn, database, fingerprint, migrator)
        except Exception as exc:
            log.warning("could not export the template to the cache %s: %s", self.directory, exc)
            return False
        return True

    def export_template(
        self,
        conn: DBAPIConnection,
        template: str,
        fingerprint: TemplateFingerprint,
        migrator: str,
        scratch: str,
    ) -> bool:
        """Export a complete template unless the cache has a good entry for it.

        A sealed template takes no connections, so a copy of it is dumped: made by
        the dialect's own clone (as a test's copy is), named ``scratch`` (a build name
        of this session, so a crash leaves it to be reaped), then dropped.
        """
        # Every session reusing a template asks: the size tells, reading the dump would cost.
        if self._has_entry(fingerprint, checksum=False):
            return False
        try:
            self.dialect.clone(conn, self.dialect.copy_recipe(conn, template), scratch)
        except Exception as exc:
            log.warning("could not export template %s to the cache: %s", template, exc)
            return False
        try:
            return self.export(conn, scratch, fingerprint, migrator)
        finally:
            try:
                self.dialect.drop_database(conn, scratch)
            except Exception as exc:
                log.debug("dropping %s failed (left to be reaped): %s", scratch, exc)

    def _has_entry(self, fingerprint: TemplateFingerprint, *, checksum: bool = True) -> bool:
        try:
            self.check_entry(fingerprint, checksum=checksum)
        except CacheEntryError:
            return False
        return True

    def _export(
        self,
        conn: DBAPIConnection,
        database: str,
        fingerprint: TemplateFingerprint,
        migrator: str,
    ) -> None:
        if self._has_entry(fingerprint):
            # Another process (an xdist worker, a parallel job) exported it meanwhile.
            log.debug("the cache already has template %s", fingerprint.digest[:20])
            return
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed into place: a reader sees a whole entry or none.
        staging = self.directory / f".{fingerprint.digest[:20]}.{secrets.token_hex(4)}.tmp"
        staging.mkdir()
        try:
            dump = staging / self.tool.dump_name
            command, environment = self.tool.dump_command(self.address, database)
            with dump.open("wb") as output:
                result = self.backend.run_in_server(command, environment, stdout=output)
            if result.exit_code != 0:
                raise FreshDBError(
                    f"{command[0]} exited {result.exit_code}: {_last_lines(result.stderr)}"
                )
            _flavour, release = self.dialect.server_release(conn)
            manifest = CacheManifest(
                fingerprint=fingerprint.digest,
                family=fingerprint.family,
                server_version=fingerprint.server_version,
                server_release=".".join(str(part) for part in release),
                dump=dump.name,
                sha256=file_sha256(dump),
                size=dump.stat().st_size,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                migrator=migrator,
                **self.tool.describe_database(self.dialect, conn, database),
            )
            (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
            if self._has_entry(fingerprint):
                return  # exported by another process while this one dumped
            self._put_in_place(staging, self.entry(fingerprint))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "template %s exported to the cache %s in %.2f s",
            fingerprint.digest[:20],
            self.directory,
            time.perf_counter() - started,
        )

    @staticmethod
    def _put_in_place(staging: Path, entry: Path) -> None:
        if entry.exists():
            # Unusable (a usable one is never exported over): set it aside first.
            aside = entry.with_name(f".{entry.name[:20]}.{secrets.token_hex(4)}.old")
            with contextlib.suppress(FileNotFoundError):
                entry.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        try:
            staging.rename(entry)
        except OSError:
            # Another process put its export of the same template there first.
            log.debug("the cache entry %s appeared meanwhile; keeping that one", entry)


class _Concatenated:
    """A readable stream of some bytes followed by a file (the restore's stdin)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._rest.read(size)


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) if lines else "(no message)"


# -- opening the cache for a server ----------------------------------------------------------
def cache_directory(settings: Settings) -> Path | None:
    """The configured cache directory (``~`` expanded), or None."""
    if not settings.template_cache:
        return None
    return Path(os.path.expanduser(settings.template_cache))


def open_template_cache(
    settings: Settings, dialect: Dialect, backend: ServerBackend, address: ServerAddress
) -> TemplateCache | None:
    """The template cache of a session, or None if none is configured (or usable)."""
    directory = cache_directory(settings)
    if directory is None:
        return None
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(
            f"template_cache {directory} is not a directory — point FRESHDB_TEMPLATE_CACHE "
            "(or template_cache) at a directory, or unset it"
        )
    if not backend.runs_programs:
        log.warning(
            "not using the template cache %s: exporting and restoring a template runs the "
            "server's own dump tools inside freshdb's container, and an external server has "
            "none — use a throwaway or sticky server for the cache",
            directory,
        )
        return None
    return TemplateCache(directory, dialect, backend, address)


# -- the fingerprint, before any server runs ---------------------------------------------------
def server_version_from_image(engine: str, image: str) -> str | None:
    """The server version (as a fingerprint names it) an image's tag states, or None.

    ``postgres:17`` → ``"postgres 17"``; ``mariadb:10.11`` → ``"mariadb 10.11"``;
    ``mysql:9`` or ``postgres:latest`` say too little: None.
    """
    flavour = versions.image_flavour(image)
    if flavour is None or flavour not in versions.ENGINE_FLAVOURS.get(engine, ()):
        return None
    version = versions.image_version(image)
    if flavour == "postgres":
        # Postgres 10 and later: the first number is the major release.
        if version[0] == versions.NEWEST[0] or version[0] < 10:
            return None
        return f"postgres {version[0]}"
    if len(version) < 2 or versions.NEWEST[0] in version[:2]:
        return None
    return f"{flavour} {version[0]}.{version[1]}"


def predicted_fingerprint(settings: Settings, migrator: Migrator) -> TemplateFingerprint | None:
    """The template fingerprint for these settings, from the image's tag alone.

    None where the tag does not tell the server version (or the server is external):
    then only the server can say (see :func:`server_fingerprint`).
    """
    if settings.mode == "external":
        return None
    dialect = dialect_for(settings.engine)
    image = settings.image or dialect.default_image(settings.engine)
    server_version = server_version_from_image(settings.engine, image)
    if server_version is None:
        return None
    return TemplateFingerprint(dialect.family, server_version, migrator.fingerprint())


def template_fingerprint(
    settings: Settings, migrator: Migrator
) -> tuple[TemplateFingerprint, bool]:
    """The template fingerprint for these settings, and whether the server was asked.

    From the image's tag when it names the server version (no server is started);
    otherwise the configured server is started (or reached) and asked, as a session
    would, and let go of again (a throwaway one is removed).
    """
    predicted = predicted_fingerprint(settings, migrator)
    if predicted is not None:
        return predicted, False
    from freshdb.backends import backend_for
    from freshdb.template import TemplateBuilder

    dialect = dialect_for(settings.engine)
    backend = backend_for(settings, dialect)
    running = backend.start()
    try:
        conn = dialect.connect(running.address)
        try:
            builder = TemplateBuilder(dialect, running.address, settings.prefix, owner="")
            return builder.fingerprint(conn, migrator), True
        finally:
            conn.close()
    finally:
        backend.stop()


__all__: Sequence[str] = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "CacheEntryError",
    "CacheManifest",
    "DumpTool",
    "MySQLDumpTool",
    "PostgresDumpTool",
    "TemplateCache",
    "cache_directory",
    "dump_tool_for",
    "open_template_cache",
    "predicted_fingerprint",
    "refusal",
    "server_version_from_image",
    "template_fingerprint",
]
