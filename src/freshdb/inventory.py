"""What freshdb has on a machine: servers, their templates and copies, and leftovers.

The CLI's facts and housekeeping live here, apart from their presentation: which
servers bear freshdb's labels and prefix, what each holds (templates in use or
stale, copies live, leaked or kept), and removing what no session will use again.
Nothing is touched unless its labels and name say freshdb made it with this prefix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from docker.models.containers import Container

from freshdb import naming
from freshdb.backends.containers import (
    container_facts,
    list_managed_containers,
    remove_container,
)
from freshdb.backends.docker import DockerBackend
from freshdb.backends.retirement import (
    DOWN_WAIT_SECONDS,
    STICKY_START_GRACE,
    STICKY_UNUSED_AFTER,
    Retirement,
)
from freshdb.backends.throwaways import is_leaked_throwaway
from freshdb.config import Settings
from freshdb.dialects import dialect_for
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import ConfigurationError, FreshDBError, ServerUnavailableError, one_line
from freshdb.server import reap_dead_owners
from freshdb.template import plan_pruning, prune_templates, read_templates

log = logging.getLogger("freshdb")


@dataclasses.dataclass(frozen=True)
class TemplateInfo:
    """A complete template on a server."""

    name: str
    fingerprint: str
    created: str
    size_bytes: int | None
    in_use: bool
    #: Retention would remove it now (``freshdb prune`` drops it once unused).
    stale: bool
    migrator: str | None
    #: When a project last used it (ISO 8601).
    last_used: str = ""
    #: The projects that used it, each with when it last did.
    projects: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Why retention would remove it, if it would.
    stale_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class CopyInfo:
    """A copy of a template (or a template being built), and whether its owner lives."""

    name: str
    kind: str  # "copy", "kept" or "build"
    fingerprint: str
    owner: str
    live: bool
    size_bytes: int | None
    created: dt.datetime | None

    @property
    def leaked(self) -> bool:
        """A copy or build whose owner session is gone (kept copies are kept on purpose)."""
        return self.kind != "kept" and not self.live


@dataclasses.dataclass
class ServerStatus:
    """One freshdb server: a container (or the external server) and its databases."""

    name: str
    engine: str
    mode: str
    prefix: str
    image: str | None
    status: str
    host: str | None
    port: int | None
    uptime_seconds: float | None
    memory_bytes: int | None
    #: A throwaway container whose owner process is gone.
    leaked: bool = False
    #: A sticky container no longer wanted, and why ("superseded: ...", "unused: ...");
    #: ``freshdb prune`` retires it once idle.
    retire_reason: str | None = None
    #: Whether the server is used by anyone else: "idle", "in use (...)", or ``None``
    #: when it could not be asked (not running, not answering).
    use: str | None = None
    #: freshdb sessions holding their owner lease (``None``: the engine cannot tell).
    sessions: int | None = None
    #: Client connections other than the one asking.
    connections: int | None = None
    templates: list[TemplateInfo] = dataclasses.field(default_factory=list)
    copies: list[CopyInfo] = dataclasses.field(default_factory=list)
    #: Why the databases could not be read, if they could not.
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no credentials)."""
        data = dataclasses.asdict(self)
        for copy, info in zip(data["copies"], self.copies, strict=True):
            copy["created"] = info.created.isoformat(timespec="seconds") if info.created else None
            copy["leaked"] = info.leaked
        return data


@dataclasses.dataclass(frozen=True)
class Removal:
    """One thing ``freshdb prune`` or ``freshdb down`` removed (or would remove)."""

    what: str  # "container", "template", "copy", "build" or "kept copy"
    name: str
    server: str
    reason: str


@dataclasses.dataclass
class FoundServer:
    """A server found in scope, with how to talk to it (if it answers)."""

    info: ServerStatus
    container: Container | None = None
    dialect: Dialect | None = None
    address: ServerAddress | None = None


# -- finding servers ----------------------------------------------------------------
def _docker_backend(settings: Settings) -> DockerBackend:
    return DockerBackend(settings, dialect_for(settings.engine))


def _external_server(settings: Settings) -> FoundServer:
    dialect = dialect_for(settings.engine)
    address = dialect.address_from_url(settings.url or "")
    info = ServerStatus(
        name=f"external {address.host}:{address.port}",
        engine=settings.engine,
        mode="external",
        prefix=settings.prefix,
        image=None,
        status="external",
        host=address.host,
        port=address.port,
        uptime_seconds=None,
        memory_bytes=None,
    )
    return FoundServer(info, dialect=dialect, address=address)


def _servers(
    settings: Settings,
    all_prefixes: bool = False,
    memory: bool = True,
    backend: DockerBackend | None = None,
    unused_after: dt.timedelta = STICKY_UNUSED_AFTER,
) -> list[FoundServer]:
    """Every server in scope: the external one, or the labelled containers of the prefix."""
    if settings.mode == "external":
        return [_external_server(settings)]
    backend = backend or _docker_backend(settings)
    found = list_managed_containers(backend.client(), None if all_prefixes else settings.prefix)
    servers = []
    now = dt.datetime.now(dt.UTC)
    for container in sorted(found, key=lambda c: str(c.name)):
        facts = container_facts(container, with_memory=memory)
        if not facts.prefix or not facts.name.startswith(f"{facts.prefix}-"):
            continue  # labelled, but not named by freshdb: not ours to judge
        info = ServerStatus(
            name=facts.name,
            engine=facts.engine,
            mode=facts.mode,
            prefix=facts.prefix,
            image=facts.image,
            status=facts.status,
            host=None,
            port=facts.host_port,
            uptime_seconds=(now - facts.started).total_seconds() if facts.started else None,
            memory_bytes=facts.memory_bytes,
            leaked=is_leaked_throwaway(container),
            retire_reason=backend.retirement_reason(container, unused_after),
        )
        server = FoundServer(info, container=container)
        servers.append(server)
        if facts.status != "running":
            continue
        try:
            server.dialect = dialect_for(facts.engine)
            server.address = backend.address_of(container, server.dialect)
            info.host = server.address.host
        except FreshDBError as exc:
            info.error = one_line(exc)
    return servers


@contextlib.contextmanager
def _connection(server: FoundServer) -> Iterator[DBAPIConnection]:
    assert server.dialect is not None and server.address is not None
    conn = server.dialect.connect(server.address, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


# -- describing ---------------------------------------------------------------------
def gather(settings: Settings, all_prefixes: bool = False) -> list[ServerStatus]:
    """Every freshdb server in scope, with its templates and copies (``freshdb status``)."""
    servers = _servers(settings, all_prefixes=all_prefixes)
    for server in servers:
        if server.address is None:
            continue
        try:
            with _connection(server) as conn:
                assert server.dialect is not None
                use = server.dialect.server_use(conn)
                templates, copies = describe_databases(
                    server.dialect,
                    conn,
                    server.info.prefix,
                    settings.keep_templates,
                    settings.template_retention_seconds,
                )
        except Exception as exc:  # one unreadable server must not hide the others
            server.info.error = one_line(exc)
            continue
        server.info.templates, server.info.copies = templates, copies
        server.info.sessions, server.info.connections = use.sessions, use.connections
        server.info.use = "idle" if use.idle else f"in use ({use.describe()})"
    return [server.info for server in servers]


def describe_databases(
    dialect: Dialect,
    conn: DBAPIConnection,
    prefix: str,
    keep_templates: int,
    retention_seconds: float = 7 * 86400,
) -> tuple[list[TemplateInfo], list[CopyInfo]]:
    """The templates and copies a server holds for ``prefix``, most recently used first.

    A template being built or removed right now is not listed (it is not complete).
    """
    parsed = dialect.our_databases(conn, prefix)
    names = [p.name for p in parsed]
    sizes = dialect.database_sizes(conn, names) if names else {}
    records, _ = read_templates(dialect, conn, prefix)
    # The same rules prune_templates follows: what it would remove now is stale.
    reasons = {p.name: p.reason for p in plan_pruning(records, keep_templates, retention_seconds)}
    templates = [
        TemplateInfo(
            name=r.name,
            fingerprint=r.fingerprint,
            created=r.created,
            size_bytes=sizes.get(r.name),
            in_use=r.in_use,
            stale=r.name in reasons,
            migrator=r.migrator,
            last_used=r.last_used,
            projects=dict(r.projects),
            stale_reason=reasons.get(r.name),
        )
        for r in sorted(records, key=lambda r: r.last_used, reverse=True)
    ]
    others = [p for p in parsed if p.kind != "template" and p.owner]
    alive = dialect.live_owners(conn, sorted({str(p.owner) for p in others}))
    created = dialect.database_created(conn, [p.name for p in others]) if others else {}
    copies = [
        CopyInfo(
            name=p.name,
            kind=p.kind,
            fingerprint=p.fingerprint,
            owner=str(p.owner),
            live=p.owner in alive,
            size_bytes=sizes.get(p.name),
            created=created.get(p.name),
        )
        for p in others
    ]
    return templates, copies


# -- the server of the current settings -----------------------------------------------
@dataclasses.dataclass(frozen=True)
class ServerAccess:
    """How to reach the server the current settings point at, found without starting it."""

    dialect: Dialect
    address: ServerAddress
    container: Container | None  # None for an external server


def current_server(settings: Settings) -> ServerAccess:
    """The running sticky server of these settings, or the external server."""
    if settings.mode == "external":
        server = _external_server(settings)
        assert server.dialect is not None and server.address is not None
        return ServerAccess(server.dialect, server.address, None)
    require_lasting_mode(settings, "this command")
    backend = _docker_backend(settings)
    container = backend.find_sticky()
    if container is None or container.status != "running":
        state = "is not running" if container is not None else "does not exist"
        raise ServerUnavailableError(
            f"the sticky {settings.engine} server for prefix {settings.prefix!r} and image "
            f"{backend.image_name} {state} — start it with `freshdb up`"
        )
    return ServerAccess(backend.dialect, backend.address_of(container), container)


def require_lasting_mode(settings: Settings, command: str) -> None:
    """Refuse throwaway mode where a server must outlive the command."""
    if settings.mode == "throwaway":
        raise ConfigurationError(
            f"{command} needs a server that outlives it, but the mode is 'throwaway' (the "
            "default when CI is set) — pass --mode sticky, or --url for an existing server"
        )


# -- removing -------------------------------------------------------------------------
def prune(settings: Settings, max_age: dt.timedelta | None, dry_run: bool) -> list[Removal]:
    """Remove leftovers of this prefix (``freshdb prune``); with ``dry_run``, only list them.

    Leaked throwaway containers (owner process gone, or older than ``max_age``);
    idle sticky containers no longer wanted (superseded, or not asked for by any
    start in ``max_age``, by default :data:`~freshdb.backends.retirement.STICKY_UNUSED_AFTER`;
    never the one of these settings, never one in use); on every running server,
    copies and builds whose owner session is gone
    (:func:`freshdb.server.reap_dead_owners`), templates retention removes
    beyond ``keep_templates`` — superseded ones first, then ones unused for
    ``template_retention`` — that no session uses
    (:func:`freshdb.template.prune_templates`), and kept copies older than ``max_age``.
    """
    removals: list[Removal] = []
    backend = _docker_backend(settings) if settings.mode != "external" else None
    unused_after = max_age if max_age is not None else STICKY_UNUSED_AFTER
    servers = _servers(settings, memory=False, backend=backend, unused_after=unused_after)
    current = _current_sticky_name(settings, backend)
    for server in servers:
        name = server.info.name
        reason = server.info.retire_reason
        if backend is not None and server.container is not None and reason and name != current:
            outcome = _retire(backend, server.container, dry_run)
            if outcome.removed:
                removals.append(Removal("container", name, name, f"{reason}, idle"))
                continue
            log.info("keeping %s (%s): %s", name, reason, outcome.why)
        if server.container is not None and is_leaked_throwaway(server.container, max_age):
            removals.append(
                Removal(
                    "container",
                    name,
                    name,
                    "leaked throwaway server: " + _throwaway_reason(server.info, max_age),
                )
            )
            if not dry_run:
                log.debug("removing leaked throwaway container %s", name)
                remove_container(server.container)
            continue
        if server.address is None:
            if server.info.error:
                log.warning("skipping %s: %s", name, server.info.error)
            continue
        try:
            with _connection(server) as conn:
                removals += _prune_databases(server, conn, settings, max_age, dry_run)
        except FreshDBError as exc:
            log.warning("skipping %s: %s", name, one_line(exc))
    return removals


def _current_sticky_name(settings: Settings, backend: DockerBackend | None) -> str | None:
    if backend is None or settings.mode != "sticky":
        return None
    try:
        return backend.sticky_name()
    except FreshDBError:
        return None


def _retire(backend: DockerBackend, container: Container, dry_run: bool) -> Retirement:
    # Not waiting: prune is housekeeping, a busy server is simply kept for later.
    return backend.retire(container, grace=STICKY_START_GRACE, dry_run=dry_run)


def _throwaway_reason(info: ServerStatus, max_age: dt.timedelta | None) -> str:
    if info.leaked:
        return "its owner process is gone"
    hours = max_age.total_seconds() / 3600 if max_age is not None else 0
    return f"older than {hours:g} h"


def _prune_databases(
    server: FoundServer,
    conn: DBAPIConnection,
    settings: Settings,
    max_age: dt.timedelta | None,
    dry_run: bool,
) -> list[Removal]:
    dialect, prefix, where = server.dialect, server.info.prefix, server.info.name
    assert dialect is not None
    removals = []
    for name in reap_dead_owners(dialect, conn, prefix, dry_run=dry_run):
        parsed = naming.parse_database_name(prefix, name)
        what = "build" if parsed and parsed.kind == "build" else "copy"
        removals.append(Removal(what, name, where, "its owner session is gone"))
    for pruned in prune_templates(
        dialect,
        conn,
        prefix,
        settings.keep_templates,
        set(),
        retention_seconds=settings.template_retention_seconds,
        dry_run=dry_run,
    ):
        removals.append(Removal("template", pruned.name, where, pruned.reason))
    if max_age is None:
        return removals
    kept = [p.name for p in dialect.our_databases(conn, prefix, ("kept",))]
    created = dialect.database_created(conn, kept) if kept else {}
    cutoff = dt.datetime.now(dt.UTC) - max_age
    for name in kept:
        if name in created and created[name] <= cutoff:
            removals.append(
                Removal(
                    "kept copy",
                    name,
                    where,
                    f"kept longer than {max_age.total_seconds() / 3600:g} h",
                )
            )
            if not dry_run:
                log.debug("dropping kept copy %s", name)
                dialect.drop_database(conn, name)
    return removals


def remove_sticky_servers(
    settings: Settings,
    every: bool = False,
    force: bool = False,
    wait: float = DOWN_WAIT_SECONDS,
) -> tuple[list[Removal], list[Retirement]]:
    """Remove the sticky server of these settings (``every``: all of the prefix).

    A server in use is waited for up to ``wait`` seconds, then kept unless ``force``:
    the removals, and the servers kept (each saying who uses it).
    """
    backend = _docker_backend(settings)
    if every:
        containers = [
            c
            for c in list_managed_containers(backend.client(), settings.prefix)
            if (c.labels or {}).get(naming.LABEL_MODE) == "sticky"
        ]
    else:
        found = backend.find_sticky()
        containers = [found] if found is not None else []
    removals, kept = [], []
    for container in containers:
        outcome = backend.retire(container, force=force, wait=wait)
        if outcome.removed:
            reason = "down --force" if force else "down"
            removals.append(Removal("container", outcome.name, outcome.name, reason))
        else:
            kept.append(outcome)
    return removals, kept


__all__ = [
    "CopyInfo",
    "Removal",
    "Retirement",
    "ServerAccess",
    "ServerStatus",
    "TemplateInfo",
    "current_server",
    "describe_databases",
    "gather",
    "prune",
    "remove_sticky_servers",
    "require_lasting_mode",
]
