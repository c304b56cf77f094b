"""What a session does on its server before the pool starts: reap, template, prune.

Run once per ``start()``, with the session's owner lease held: leftovers of dead
sessions are reaped (:mod:`freshdb.cleanup.leftovers`), the template is found,
restored from the cache or built (:mod:`freshdb.template`), and templates nobody
uses any more are pruned (:mod:`freshdb.cleanup.retention`).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import URL

from freshdb.backends import ServerBackend
from freshdb.cleanup.leftovers import reap_dead_owners
from freshdb.cleanup.retention import prune_templates
from freshdb.config import Settings
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.migrators import Migrator
from freshdb.template import Template, TemplateBuilder
from freshdb.template_cache.cache import open_template_cache

log = logging.getLogger("freshdb")


def import_dialect_meanwhile(drivername: str) -> None:
    """Import SQLAlchemy's dialect of ``drivername`` in a background thread.

    The copies' first connections (the pool's) and the first engine need it; imported
    while the start waits on the server, it is off the first hand-out's path (about
    25 ms for psycopg's, measured on a warm start).
    """

    def load() -> None:
        try:
            URL.create(drivername).get_dialect()
        except Exception as exc:  # the pool says what is wrong when it connects
            log.debug("importing the %s dialect ahead failed: %s", drivername, exc)

    threading.Thread(target=load, name="freshdb-import", daemon=True).start()


def prepare_template(
    settings: Settings,
    dialect: Dialect,
    backend: ServerBackend,
    address: ServerAddress,
    lease: DBAPIConnection,
    owner: str,
    migrator: Migrator,
) -> tuple[Template, list[str]]:
    """The template copies of ``migrator``'s schema are made from, ready on the server,
    and the names of the dead sessions' leftovers reaped on the way."""
    reaped = reap_dead_owners(dialect, lease, settings.prefix)
    cache = open_template_cache(settings, dialect, backend, address)
    builder = TemplateBuilder(dialect, address, settings.prefix, owner, cache=cache)
    template = builder.ensure(lease, migrator)
    prune_templates(
        dialect,
        lease,
        settings.prefix,
        settings.keep_templates,
        {template.name},
        retention_seconds=settings.template_retention_seconds,
    )
    return template, reaped


def template_origin(template: Template | None) -> str:
    """Where the session's template came from, for the log: built, restored or reused."""
    if template is None or not template.reused:
        return "restored from the cache" if template and template.restored else "built"
    return "reused"
