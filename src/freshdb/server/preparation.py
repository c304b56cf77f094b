"""What a session does on its server before the pool starts: reap, template, prune.

Run once per ``start()``, with the session's owner lease held: leftovers of dead
sessions are reaped (:mod:`freshdb.cleanup.leftovers`), the template is found,
restored from the cache or built (:mod:`freshdb.template`), and templates nobody
uses any more are pruned (:mod:`freshdb.cleanup.retention`).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence

from freshdb.backends import ServerBackend
from freshdb.cleanup.leftovers import reap_dead_owners
from freshdb.cleanup.retention import prune_templates
from freshdb.config import Settings
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.migrators import Migrator
from freshdb.template import Template, TemplateBuilder
from freshdb.template_cache.cache import open_template_cache

log = logging.getLogger("freshdb")


def import_meanwhile(drivername: str, modules: Sequence[str] = ()) -> threading.Thread:
    """Import SQLAlchemy, its dialect of ``drivername``, the driver and ``modules`` in
    a background thread; the thread is returned (nothing waits for it: whoever needs
    a module first waits on Python's import lock instead).

    ``import freshdb.server`` imports no SQLAlchemy, so that a start asks for its
    server first: the imports (~0.3 s, SQLAlchemy most of it) then run while the
    server starts, off a cold start's path, and while a warm start checks its server.
    The template's build, the copies' first connections and the first engine need
    them. A failure is only logged: whoever needs the module says what is wrong.
    """

    def load() -> None:
        try:
            from sqlalchemy.engine import URL

            URL.create(drivername).get_dialect().import_dbapi()  # the driver too
            for module in modules:
                importlib.import_module(module)
        except Exception as exc:
            log.debug("importing the %s dialect ahead failed: %s", drivername, exc)

    thread = threading.Thread(target=load, name="freshdb-import", daemon=True)
    try:
        thread.start()
    except RuntimeError as exc:  # no thread to be had: the modules are imported when used
        log.debug("importing ahead in a thread failed: %s", exc)
    return thread


#: What a start's work after the server answers imports, beyond the dialect: the
#: template's build (an engine without a pool, SQL errors) and ``.sql`` splitting.
START_MODULES = ("sqlalchemy.pool", "sqlalchemy.exc", "freshdb.migrators.sql_splitter")


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
