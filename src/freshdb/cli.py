"""The ``freshdb`` command: see and manage the servers, templates and copies freshdb runs.

Every command resolves the same settings as the library (options > ``FRESHDB_*``
environment > ``[tool.freshdb]`` in pyproject.toml > defaults). Exit status: 0 on
success, 1 on failure (one line on stderr saying why), 2 on a usage error.
The facts and the housekeeping live in :mod:`freshdb.inventory`; this module parses
options and presents results.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import docker.errors

from freshdb import inventory
from freshdb._version import __version__
from freshdb.backends import backend_for
from freshdb.backends.docker import DOWN_WAIT_SECONDS
from freshdb.config import Settings, resolve_settings
from freshdb.dialects import dialect_for
from freshdb.dialects.base import Dialect, ServerAddress
from freshdb.errors import ConfigurationError, FreshDBError
from freshdb.inventory import one_line

_COMMON = ("engine", "image", "mode", "url", "prefix", "schema")


# -- configuration -------------------------------------------------------------------
def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a command: its options over the environment and pyproject.toml."""
    given = {name: getattr(args, name, None) for name in _COMMON}
    if given["url"] and not given["mode"]:
        # An explicit --url means "that server", whatever mode the environment sets.
        given["mode"] = "external"
    return resolve_settings(given)


def _url_text(dialect: Dialect, address: ServerAddress, database: str | None, plain: bool) -> str:
    url = dialect.sync_url(address, database)
    if plain:  # what psql and other clients take: no SQLAlchemy driver suffix
        url = url.set(drivername=url.get_backend_name())
    return url.render_as_string(hide_password=False)


# -- commands --------------------------------------------------------------------------
def command_up(args: argparse.Namespace) -> int:
    """Start (or reuse) the sticky server; print its admin URL."""
    settings = settings_from(args)
    inventory.require_lasting_mode(settings, "`freshdb up`")
    dialect = dialect_for(settings.engine)
    backend = backend_for(settings, dialect)
    running = backend.start()
    what = running.container_name or f"{running.address.host}:{running.address.port}"
    verb = "reused" if running.reused else "started"
    if settings.mode == "external":
        verb = "reached"
    _note(args, f"{settings.engine} server {what} {verb} in {running.startup_seconds:.2f} s")
    print(_url_text(dialect, running.address, None, args.plain))
    return 0


def command_status(args: argparse.Namespace) -> int:
    """Show every freshdb server in scope, its templates and its copies."""
    settings = settings_from(args)
    servers = inventory.gather(settings, all_prefixes=args.all_prefixes)
    if args.json:
        document = {
            "prefix": None if args.all_prefixes else settings.prefix,
            "keep_templates": settings.keep_templates,
            "template_retention": settings.template_retention,
            "servers": [server.as_dict() for server in servers],
        }
        print(json.dumps(document, indent=2))
        return 0
    if not servers:
        scope = "any prefix" if args.all_prefixes else f"prefix {settings.prefix!r}"
        print(f"no freshdb servers with {scope} — `freshdb up` starts one")
        return 0
    for index, server in enumerate(servers):
        if index:
            print()
        print(_server_text(server, settings))
    return 0


def command_url(args: argparse.Namespace) -> int:
    """Print the admin URL of the current server, or the URL of one database."""
    settings = settings_from(args)
    server = inventory.current_server(settings)
    print(_url_text(server.dialect, server.address, args.database, args.plain))
    return 0


def command_shell(args: argparse.Namespace) -> int:
    """An interactive SQL client inside the server's container."""
    from freshdb.backends.docker import exec_interactive

    settings = settings_from(args)
    if settings.mode == "external":
        raise ConfigurationError(
            "`freshdb shell` runs the client inside freshdb's container, and an external "
            "server has none — connect with your own client to `freshdb url --plain`"
        )
    server = inventory.current_server(settings)
    assert server.container is not None
    command, environment = client_command(server.dialect, server.address, args.database)
    return exec_interactive(server.container, command, environment)


def client_command(
    dialect: Dialect, address: ServerAddress, database: str | None
) -> tuple[list[str], dict[str, str]]:
    """The SQL client the engine's official image ships, and its environment.

    It runs inside the container, so it talks to the server on the container's own
    loopback (Postgres: its Unix socket, which the official image trusts; the TCP
    lines of pg_hba.conf may expect another password format than the one freshdb
    stores); the password goes in the environment, never on a command line.
    """
    database = database or address.admin_database
    if dialect.family == "postgres":
        return (
            ["psql", "-U", address.user, "-d", database],
            {"PGPASSWORD": address.password},
        )
    # MariaDB 11 images ship `mariadb` only, MySQL images `mysql` only.
    script = 'if command -v mariadb >/dev/null 2>&1; then exec mariadb "$@"; fi; exec mysql "$@"'
    return (
        ["sh", "-c", script, "client", "-h", "127.0.0.1", "-u", address.user, database],
        {"MYSQL_PWD": address.password},
    )


def command_warm(args: argparse.Namespace) -> int:
    """Build (or confirm) the template for the schema now, so tests find it ready."""
    from freshdb.migrators import as_migrator, describe
    from freshdb.server import DatabaseServer

    settings = settings_from(args)
    inventory.require_lasting_mode(settings, "`freshdb warm`")
    fields = {
        k: v for k, v in dataclasses.asdict(settings).items() if k not in ("engine", "pool_size")
    }
    server = DatabaseServer(settings.engine, pool_size=0, **fields)
    migrator = describe(as_migrator(settings.schema, server.dialect.sqlalchemy_name))
    started = time.perf_counter()
    from freshdb.template import build_progress_shown

    def show(line: str) -> None:
        # On stderr: stdout keeps the one line scripts read.
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    with build_progress_shown(show):
        server.start()
    try:
        stats = server.stats()
    finally:
        server.stop()
    verb = "reused" if stats["template_reused"] else "built"
    print(f"template {stats['template']} {verb} ({migrator})")
    _note(args, f"done in {time.perf_counter() - started:.2f} s")
    return 0


def command_prune(args: argparse.Namespace) -> int:
    """Remove stale templates, leaked copies and leaked throwaway containers."""
    settings = settings_from(args)
    max_age = dt.timedelta(hours=args.max_age) if args.max_age is not None else None
    removals = inventory.prune(settings, max_age=max_age, dry_run=args.dry_run)
    if args.json:
        document = {
            "dry_run": args.dry_run,
            "removed": [vars(removal) for removal in removals],
        }
        print(json.dumps(document, indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for removal in removals:
        where = "" if removal.what == "container" else f" on {removal.server}"
        print(f"{verb} {removal.what} {removal.name}{where} ({removal.reason})")
    if not removals:
        print("nothing to prune")
    return 0


def command_down(args: argparse.Namespace) -> int:
    """Stop and remove the sticky server (or, with --all, every one of the prefix).

    A server others are using is waited for (``--wait``), then kept: exit status 1,
    saying who uses it, unless ``--force``.
    """
    settings = settings_from(args)
    if settings.mode == "external":
        raise ConfigurationError(
            "`freshdb down` removes freshdb's own containers; an external server is not "
            "freshdb's to stop"
        )
    # `down` is about sticky servers whatever the mode default (CI sets throwaway).
    removals, kept = inventory.remove_sticky_servers(
        settings.replace(mode="sticky"), every=args.all, force=args.force, wait=args.wait
    )
    for removal in removals:
        print(f"removed {removal.name}" + (" (forced)" if args.force else ""))
    for outcome in kept:
        print(
            f"freshdb: error: kept {outcome.name}: {outcome.why} after waiting "
            f"{args.wait:g} s — let those test sessions finish and run `freshdb down` again, "
            "or `freshdb down --force` to remove it anyway (their connections are cut)",
            file=sys.stderr,
        )
    if not removals and not kept:
        scope = "of prefix" if args.all else "for these settings with prefix"
        print(f"no sticky server {scope} {settings.prefix!r}")
    return 1 if kept else 0


# -- presentation ----------------------------------------------------------------------
def _server_text(server: inventory.ServerStatus, settings: Settings) -> str:
    facts = [server.engine, server.mode, server.status]
    if server.port is not None:
        facts.append(f"{server.host}:{server.port}" if server.host else f"port {server.port}")
    if server.uptime_seconds is not None:
        facts.append(f"up {_duration(server.uptime_seconds)}")
    if server.memory_bytes is not None:
        facts.append(f"memory {_size(server.memory_bytes)}")
    if server.image:
        facts.append(f"image {server.image}")
    if server.leaked:
        facts.append("LEAKED (owner gone: `freshdb prune` removes it)")
    if server.use:
        facts.append(server.use)
    lines = [f"{server.name}  " + ", ".join(facts)]
    if server.retire_reason:
        then = (
            "`freshdb prune` removes it"
            if server.use == "idle" or server.status != "running"
            else "`freshdb prune` removes it once idle"
        )
        lines.append(f"  no longer wanted ({server.retire_reason}): {then}")
    if server.error:
        lines.append(f"  databases unreadable: {server.error}")
    if server.templates:
        lines.append(
            f"  templates (up to {settings.keep_templates} kept; beyond that, superseded ones "
            f"and ones unused for {settings.template_retention} are pruned):"
        )
        rows = [["name", "last used (UTC)", "created (UTC)", "size", "state", "migrator"]]
        rows += [
            [
                t.name,
                _moment(t.last_used),
                _moment(t.created),
                _size(t.size_bytes),
                ("in use" if t.in_use else "unused") + (", stale" if t.stale else ""),
                t.migrator or "",
            ]
            for t in server.templates
        ]
        lines += _table(rows, indent=4)
    if server.copies:
        live = sum(1 for c in server.copies if c.live and c.kind == "copy")
        leaked = sum(1 for c in server.copies if c.leaked)
        kept = sum(1 for c in server.copies if c.kind == "kept")
        lines.append(f"  copies: {live} live, {leaked} leaked, {kept} kept:")
        rows = [
            [c.name, f"owner {c.owner}", _copy_state(c), _size(c.size_bytes)] for c in server.copies
        ]
        lines += _table(rows, indent=4)
    elif server.status in ("running", "external") and not server.error:
        lines.append("  no copies")
    return "\n".join(lines)


def _moment(iso: str) -> str:
    """An ISO 8601 UTC time as ``YYYY-MM-DD HH:MM`` (``?`` if unknown)."""
    try:
        return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "?"


def _copy_state(copy: inventory.CopyInfo) -> str:
    if copy.kind == "kept":
        return "kept" + ("" if copy.live else " (owner gone)")
    if copy.kind == "build":
        return "building" if copy.live else "leaked build"
    return "live" if copy.live else "leaked"


def _table(rows: list[list[str]], indent: int) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        " " * indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {int(seconds) % 60:02d}s"


def _note(args: argparse.Namespace, message: str) -> None:
    """A human note on stderr (stdout stays for what scripts capture)."""
    if not args.quiet:
        print(f"freshdb: {message}", file=sys.stderr)


# -- parsing -----------------------------------------------------------------------------
def _non_negative(unit: str) -> Callable[[str], float]:
    """An argparse type: a number of ``unit`` that is not negative."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{unit} must not be negative")
        return value

    return parse


_hours = _non_negative("hours")
_seconds = _non_negative("seconds")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``freshdb`` and its commands."""
    # SUPPRESS: the options may come before or after the command without one
    # level's "not given" overwriting the other's value.
    common = argparse.ArgumentParser(add_help=False)
    options = common.add_argument_group("settings (default: FRESHDB_* env, then pyproject.toml)")
    options.add_argument("--engine", default=argparse.SUPPRESS, help="postgres, mysql or mariadb")
    options.add_argument("--image", default=argparse.SUPPRESS, help="the server image")
    options.add_argument("--mode", default=argparse.SUPPRESS, help="sticky, throwaway or external")
    options.add_argument(
        "--url", default=argparse.SUPPRESS, help="admin URL of an existing server (external mode)"
    )
    options.add_argument("--prefix", default=argparse.SUPPRESS, help="names' prefix (freshdb)")
    options.add_argument(
        "--schema", default=argparse.SUPPRESS, help=".sql file or directory, or module:attribute"
    )
    output = common.add_argument_group("output")
    output.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings"
    )
    output.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )

    parser = argparse.ArgumentParser(
        prog="freshdb",
        description="See and manage the database servers, templates and copies freshdb runs.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"freshdb {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    up = command("up", command_up, "start or reuse the sticky server and print its admin URL")
    up.add_argument("--plain", action="store_true", help="URL without the driver (for psql)")

    status = command("status", command_status, "servers, templates and copies")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--all-prefixes", action="store_true", help="servers of every prefix, not just this one"
    )

    url = command("url", command_url, "print the admin URL, or one database's URL")
    url.add_argument("--database", metavar="NAME", help="the URL of this database")
    url.add_argument("--plain", action="store_true", help="URL without the driver (for psql)")

    shell = command("shell", command_shell, "psql or mysql inside the server's container")
    shell.add_argument("--database", metavar="NAME", help="connect to this database")

    command("warm", command_warm, "build the template for --schema now")

    prune = command(
        "prune", command_prune, "remove stale templates, leaked copies and leaked containers"
    )
    prune.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    prune.add_argument(
        "--max-age",
        type=_hours,
        metavar="HOURS",
        help="also remove kept copies and throwaway containers older than this",
    )
    prune.add_argument("--json", action="store_true", help="machine-readable output")

    down = command(
        "down",
        command_down,
        "stop and remove the sticky server; one in use is waited for, then kept (exit 1)",
    )
    down.add_argument("--all", action="store_true", help="every sticky server of the prefix")
    down.add_argument("--force", action="store_true", help="remove it even while sessions use it")
    down.add_argument(
        "--wait",
        type=_seconds,
        default=DOWN_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for its sessions to end (default {DOWN_WAIT_SECONDS:g})",
    )
    return parser


def _configure_logging(quiet: bool, verbose: bool) -> None:
    logger = logging.getLogger("freshdb")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("freshdb: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``freshdb``; the exit status (0 ok, 1 failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("quiet", "verbose"):
        setattr(args, flag, getattr(args, flag, False))
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print("freshdb: error: a command is required (see freshdb --help)", file=sys.stderr)
        return 2
    _configure_logging(args.quiet, args.verbose)
    try:
        return int(handler(args))
    except FreshDBError as exc:
        print(f"freshdb: error: {one_line(exc)}", file=sys.stderr)
    except docker.errors.DockerException as exc:
        print(f"freshdb: error: Docker failed: {one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("freshdb: interrupted", file=sys.stderr)
        return 130
    return 1
