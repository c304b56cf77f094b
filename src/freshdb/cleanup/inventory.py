"""What freshdb has on a machine: servers, their templates and copies, and leftovers.

The facts ``freshdb status`` prints, apart from their presentation: which servers
bear freshdb's labels and prefix, what each holds (templates in use or stale, copies
live, leaked or kept), judged by the same rules :mod:`freshdb.cleanup.removal`
acts on. Looking never changes anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from docker.models.containers import Container

from freshdb.backends.containers import container_facts, list_managed_containers
from freshdb.backends.docker import DockerBackend
from freshdb.backends.throwaways import is_leaked_throwaway
from freshdb.cleanup.retention import DEFAULT_RETENTION_SECONDS, plan_pruning, read_templates
from freshdb.cleanup.retirement import STICKY_UNUSED_AFTER, retirement_reason
from freshdb.config import Settings
from freshdb.dialects import dialect_for
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import ConfigurationError, FreshDBError, ServerUnavailableError, one_line

log = logging.getLogger("freshdb")


@dataclasses.dataclass(frozen=True)
class TemplateInfo:
    """A complete template on a server, or a snapshot (a derived template) of one."""

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
    #: ``"template"`` or ``"snapshot"``.
    kind: str = "template"
    #: A snapshot's parent template (or snapshot), by name.
    parent: str | None = None
    #: A snapshot's seed, described.
    seed: str | None = None
    #: A snapshot's key, if it has one.
    key: str | None = None
    #: Copies of it on the server now (live, leaked or kept).
    copies: int = 0
    #: Its snapshots (and theirs, nested), most recently used first.
    snapshots: list[TemplateInfo] = dataclasses.field(default_factory=list)

    def flattened(self) -> Iterator[TemplateInfo]:
        """It, then its snapshots and theirs, depth first."""
        yield self
        for snapshot in self.snapshots:
            yield from snapshot.flattened()


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


@dataclasses.dataclass
class FoundServer:
    """A server found in scope, with how to talk to it (if it answers)."""

    info: ServerStatus
    container: Container | None = None
    dialect: Dialect | None = None
    address: ServerAddress | None = None


# -- finding servers ----------------------------------------------------------------
def docker_backend(settings: Settings) -> DockerBackend:
    """The Docker backend of these settings (finds containers, starts nothing)."""
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


def find_servers(
    settings: Settings,
    all_prefixes: bool = False,
    memory: bool = True,
    backend: DockerBackend | None = None,
    unused_after: dt.timedelta = STICKY_UNUSED_AFTER,
) -> list[FoundServer]:
    """Every server in scope: the external one, or the labelled containers of the prefix."""
    if settings.mode == "external":
        return [_external_server(settings)]
    backend = backend or docker_backend(settings)
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
            retire_reason=retirement_reason(backend, container, unused_after),
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
def connect_to(server: FoundServer) -> Iterator[DBAPIConnection]:
    """An admin connection to a found server that answers, closed afterwards."""
    assert server.dialect is not None and server.address is not None
    conn = server.dialect.connect(server.address, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


# -- describing ---------------------------------------------------------------------
def gather(settings: Settings, all_prefixes: bool = False) -> list[ServerStatus]:
    """Every freshdb server in scope, with its templates and copies (``freshdb status``)."""
    servers = find_servers(settings, all_prefixes=all_prefixes)
    for server in servers:
        if server.address is None:
            continue
        try:
            with connect_to(server) as conn:
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
    retention_seconds: float = DEFAULT_RETENTION_SECONDS,
) -> tuple[list[TemplateInfo], list[CopyInfo]]:
    """The templates and copies a server holds for ``prefix``, most recently used first.

    A template being built or removed right now is not listed (it is not complete).
    """
    parsed = dialect.our_databases(conn, prefix)
    names = [p.name for p in parsed]
    sizes = dialect.database_sizes(conn, names) if names else {}
    records, _ = read_templates(dialect, conn, prefix)
    # The same rules prune_templates follows: what it would remove now is stale.
    present = [p.name for p in parsed if p.kind == "template"]
    plan = plan_pruning(records, keep_templates, retention_seconds, present=present)
    reasons = {p.name: p.reason for p in plan}
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
    infos = {
        r.name: TemplateInfo(
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
            kind=r.kind,
            parent=r.parent,
            seed=r.seed,
            key=r.key,
            copies=sum(
                1 for c in copies if c.kind != "build" and r.fingerprint.startswith(c.fingerprint)
            ),
        )
        for r in sorted(records, key=lambda r: r.last_used, reverse=True)
    }
    return snapshots_under_parents(list(infos.values())), copies


def snapshots_under_parents(templates: list[TemplateInfo]) -> list[TemplateInfo]:
    """Each snapshot moved into its parent's ``snapshots`` (layers into theirs).

    A snapshot whose parent is not listed (gone, or being built or removed right
    now) stays at the top level, its ``parent`` saying which it was. The order
    within each level is kept.
    """
    by_name = {t.name: t for t in templates}
    top = []
    for template in templates:
        parent = by_name.get(template.parent) if template.parent else None
        if parent is None or parent is template:
            top.append(template)
        else:
            parent.snapshots.append(template)
    return top


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
    backend = docker_backend(settings)
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
