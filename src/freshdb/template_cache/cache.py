"""The cache itself: restoring a template from its entry, exporting one into it.

Restoring and exporting run the engine's dump tools (:mod:`.dump_tools`) inside the
server's container through :meth:`~freshdb.backends.base.ServerBackend.run_in_server`.
An entry is written aside and renamed into place, so a reader sees a whole entry or
none; an entry that fails its checks (:mod:`.manifest`) is ignored with a warning, and
a restore that fails midway is dropped: the migrations run instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import BinaryIO

from freshdb.backends.base import ByteSource, ServerBackend
from freshdb.config import Settings
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import ConfigurationError, FreshDBError
from freshdb.template import TemplateFingerprint
from freshdb.template_cache.dump_tools import DumpTool, dump_tool_for
from freshdb.template_cache.manifest import (
    MANIFEST_NAME,
    CacheEntryError,
    CacheManifest,
    file_sha256,
    refusal,
)

log = logging.getLogger("freshdb")


@dataclasses.dataclass
class TemplateCache:
    """A directory of exported templates, for one server (inside its container)."""

    directory: Path
    dialect: Dialect
    backend: ServerBackend
    address: ServerAddress
    #: The dump tool of the server's engine family.
    tool: DumpTool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.tool = dump_tool_for(self.dialect.family)

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
        self.tool.check_manifest(manifest)
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
            with (entry / manifest.dump).open("rb") as dump:
                self.tool.restore(
                    lambda program, stdin: self._run_tool(program, stdin=stdin),
                    self.dialect,
                    self.address,
                    database,
                    dump,
                    manifest,
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

    def _run_tool(
        self,
        program: tuple[list[str], dict[str, str]],
        stdin: ByteSource | None = None,
        stdout: BinaryIO | None = None,
    ) -> None:
        """Run a dump tool's program (command and environment) in the server's container.

        :class:`FreshDBError`, with the end of what it wrote to stderr, if it fails.
        """
        command, environment = program
        result = self.backend.run_in_server(command, environment, stdin, stdout)
        if result.exit_code != 0:
            raise FreshDBError(
                f"{command[0]} exited {result.exit_code}: {_last_lines(result.stderr)}"
            )

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
            program = self.tool.dump_command(self.address, database)
            with dump.open("wb") as output:
                self._run_tool(program, stdout=output)
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


__all__ = ["TemplateCache", "cache_directory", "open_template_cache"]
