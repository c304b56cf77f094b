"""The CI template cache: templates exported to a directory, restored instead of migrated.

In CI the server is a throwaway, so every job would run the whole migration history
again. With ``template_cache = DIR`` (``FRESHDB_TEMPLATE_CACHE``, ``freshdb warm
--export DIR``), a template freshdb builds is also exported to ``DIR/<fingerprint>/``,
and a server without that template restores it from there instead of running the
migrations; the CI service's own cache keeps ``DIR`` between jobs, keyed by
``freshdb fingerprint``. A restored template is sealed exactly like a built one,
under the same build lock (see :mod:`freshdb.template`).

An entry is a dump and a manifest. The dump is made by the server's own tools
inside its container, so their version always matches the server's: ``pg_dump`` (a
plain SQL script, replayed by freshdb over its own connection: no program runs in
the container to restore it) on Postgres; ``mariadb-dump`` or ``mysqldump``, restored
by the ``mariadb`` or ``mysql`` client in the container, on MySQL and MariaDB
(tables, rows, views, routines, triggers and events). Database-level facts a dump
of one database leaves out are kept in the manifest: Postgres ``ALTER DATABASE …
SET`` settings and grants, MySQL's default character set and collation. An
external server has no container of freshdb's: the cache is not used there (a
warning says so).

Nothing is restored that is not known good: the manifest must name the same
fingerprint, engine family and major server version, and the dump must have the
recorded size and sha256. Any other entry (corrupt, truncated, made by another
server) is ignored with a warning, the migrations run, and the export that follows
replaces it. A restore that fails midway is dropped, and the migrations run.

Where each part lives: :mod:`.manifest` (an entry's manifest, its checks, the dump's
checksum), :mod:`.dump_tools` (each engine family's dump and restore programs),
:mod:`.cache` (restoring and exporting an entry, opening the cache for a server) and
:mod:`.fingerprint` (the cache key, before any server runs).
"""

from __future__ import annotations

from freshdb.template_cache.cache import TemplateCache, cache_directory, open_template_cache
from freshdb.template_cache.dump_tools import (
    DumpTool,
    MySQLDumpTool,
    PostgresDumpTool,
    dump_tool_for,
)
from freshdb.template_cache.fingerprint import (
    predicted_fingerprint,
    server_version_from_image,
    template_fingerprint,
)
from freshdb.template_cache.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    CacheEntryError,
    CacheManifest,
    file_sha256,
    refusal,
)

__all__ = [
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
    "file_sha256",
    "open_template_cache",
    "predicted_fingerprint",
    "refusal",
    "server_version_from_image",
    "template_fingerprint",
]
