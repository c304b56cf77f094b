"""What the plugin tells the user: the header, kept databases, the end-of-session summary.

Every URL shown here has its password masked; ``freshdb url`` prints the real one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from freshdb.config import Settings
    from freshdb.database import Database

#: The report section (and user property) that carries a kept database.
KEPT_SECTION = "freshdb: kept database"
KEPT_PROPERTY = "freshdb_kept"


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def header_line(settings: Settings) -> str:
    """The configured server, shown before the tests run (nothing is started yet).

    It costs no import of SQLAlchemy or an engine's dialect: a run whose tests use
    no freshdb fixture shows it too. So an unset image is "the default image".
    """
    if settings.mode == "external" and settings.url:
        where = f"external server {masked(settings.url)}"
    else:
        image = f"image {settings.image}" if settings.image else "the default image"
        where = f"{settings.mode} container, {image}"
    return (
        f"freshdb: {settings.engine}, {where}, prefix {settings.prefix}, "
        f"pool {settings.pool_size} per worker (started on first use)"
    )


@dataclasses.dataclass(frozen=True)
class KeptDatabase:
    """A failed test's database, kept for inspection."""

    name: str
    url: str  # password masked
    connect_hint: str  # how to get the URL with its password

    def section(self) -> str:
        """The text added to the failed test's report."""
        return (
            f"freshdb kept this test's database as {self.name}\n"
            f"  url:     {self.url}\n"
            f"  connect: {self.connect_hint}"
        )


def connect_hint(name: str, settings: Settings, cli_defaults: Settings | None) -> str:
    """The ``freshdb url`` command that finds the kept database's server.

    The CLI reads the environment and pyproject.toml but not pytest's options, so
    whatever pytest's options changed is spelled out.
    """
    if settings.mode == "external":
        return "use the password of the server URL you configured"
    command = f"freshdb url --database {name}"
    for option in ("engine", "image", "prefix", "mode"):
        value = getattr(settings, option)
        if value is not None and (cli_defaults is None or getattr(cli_defaults, option) != value):
            command += f" --{option} {value}"
    hint = f"{command}   (prints the URL with its password)"
    if settings.mode == "throwaway":
        hint += (
            "\n  note:    a throwaway server is removed when the session ends, and the kept "
            "database with it: use --freshdb-mode=sticky to inspect it afterwards"
        )
    return hint


def kept_database(
    database: Database, settings: Settings, cli_defaults: Settings | None
) -> KeptDatabase:
    """Where ``database`` will be found once released with ``keep()``.

    The pool renames a kept copy to ``database.kept_name``, known before the rename.
    """
    name = database.kept_name
    return KeptDatabase(
        name,
        database.url.set(database=name).render_as_string(hide_password=True),
        connect_hint(name, settings, cli_defaults),
    )


def kept_from_reports(reports: Iterable[Any]) -> list[tuple[str, str]]:
    """(test id, "name url") of every kept database among test reports."""
    found = []
    for report in reports:
        for key, value in getattr(report, "user_properties", ()):
            if key == KEPT_PROPERTY:
                found.append((str(report.nodeid), str(value)))
    return found


def _snapshot_lines(members: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per snapshot the workers of one server used: who built it, who reused it."""
    users: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for member in members:
        for snapshot in member.get("snapshots", ()):
            users.setdefault(str(snapshot["name"]), []).append((str(member["worker"]), snapshot))
    lines = []
    for name, used in users.items():
        builders = [(w, s.get("build_seconds")) for w, s in used if s.get("reused") is False]
        lines.append(f"  snapshot: {name} ({_how_built(builders, len(used))})")
    return lines


def _how_built(builders: Sequence[tuple[str, Any]], users: int) -> str:
    """How the workers of one server got a template or snapshot ``users`` of them used.

    ``builders`` are the (worker, build seconds) of those that built it: none, it was
    reused; with several users, who built it and how many others reused it.
    """
    if not builders:
        return "reused"
    how = f"built in {builders[0][1] or 0.0:.2f} s"
    if users > 1:
        how += f" by {', '.join(worker for worker, _ in builders)}"
        how += f", reused by {users - len(builders)} other worker(s)"
    return how


def summary_lines(
    reports: Sequence[Mapping[str, Any]], kept: Sequence[tuple[str, str]], verbose: bool
) -> list[str]:
    """The end-of-session summary: each server (once, however many workers used it)."""
    lines: list[str] = []
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for report in reports:
        groups.setdefault((report["engine"], report["url"], report["template"]), []).append(report)
    for (engine, url, template), members in groups.items():
        first = members[0]
        where = f"{first['mode']} server"
        if first.get("container"):
            where += f" {first['container']}"
        if first["mode"] == "external":
            state = "existing"
        elif all(m.get("server_reused") for m in members):
            state = "reused"
        else:
            state = "started"
        lines.append(f"{engine} {where} ({state}), image {first.get('image') or '-'}")
        lines.append(f"  url:      {url}")
        builders = [
            (str(m["worker"]), m.get("template_build_seconds"))
            for m in members
            if m.get("template_reused") is False
        ]
        lines.append(f"  template: {template} ({_how_built(builders, len(members))})")
        lines.extend(_snapshot_lines(members))
        if verbose:
            for member in sorted(members, key=lambda m: str(m["worker"])):
                pool = member["pool"]
                lines.append(
                    f"  pool {member['worker']}: {pool['acquired']} handed out, "
                    f"{pool['waits']} waits ({pool['wait_seconds']} s), {pool['clones']} "
                    f"copies made, {pool['drops']} dropped, {pool['kept']} kept, "
                    f"size {pool['size']}"
                )
    if kept:
        lines.append(f"kept {len(kept)} database(s) of failed tests:")
        for nodeid, description in kept:
            lines.append(f"  {nodeid}: {description}")
        lines.append(
            "  `freshdb url --database NAME` prints a kept database's URL with its password"
        )
    return lines
