"""``freshdb up``, ``url``, ``shell``, ``warm`` and ``fingerprint``: the server and its template."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from freshdb import naming
from freshdb.backends import backend_for
from freshdb.cleanup import superseded_retirer
from freshdb.cleanup.inventory import current_server, require_lasting_mode
from freshdb.cli.options import AddCommand, note, settings_from, url_text
from freshdb.dialects import dialect_for
from freshdb.dialects.base import Dialect, ServerAddress
from freshdb.errors import ConfigurationError


def command_up(args: argparse.Namespace) -> int:
    """Start (or reuse) the sticky server; print its admin URL."""
    settings = settings_from(args)
    require_lasting_mode(settings, "`freshdb up`")
    dialect = dialect_for(settings.engine)
    backend = backend_for(settings, dialect, retire_superseded=superseded_retirer(settings))
    running = backend.start()
    what = running.container_name or f"{running.address.host}:{running.address.port}"
    verb = "reused" if running.reused else "started"
    if settings.mode == "external":
        verb = "reached"
    note(args, f"{settings.engine} server {what} {verb} in {running.startup_seconds:.2f} s")
    print(url_text(dialect, running.address, None, args.plain))
    return 0


def command_url(args: argparse.Namespace) -> int:
    """Print the admin URL of the current server, or the URL of one database, with the
    configured driver (``--json``: the URL and its parts)."""
    from freshdb.drivers import ConnectionParts, configured_driver

    settings = settings_from(args)
    if args.driver:
        settings = settings.replace(driver=args.driver)
    server = current_server(settings)
    address = server.address
    driver = configured_driver(settings.driver, settings.engine)
    parts = ConnectionParts(
        server.dialect.family,
        address.host,
        address.port,
        address.user,
        address.password,
        args.database or address.admin_database or None,
    )
    url = parts.dsn() if args.plain else parts.url(driver).render_as_string(hide_password=False)
    if not args.json:
        print(url)
        return 0
    document = {
        "url": url,
        "dsn": parts.dsn(),
        "driver": driver.name,
        "host": parts.host,
        "port": parts.port,
        "user": parts.user,
        "password": parts.password,
        "database": parts.database,
    }
    print(json.dumps(document, indent=2))
    return 0


def command_shell(args: argparse.Namespace) -> int:
    """An interactive SQL client inside the server's container (``--snapshot``: on a
    fresh copy of a snapshot, see :mod:`freshdb.cli.snapshot_shell`)."""
    from freshdb.backends.execs import exec_interactive

    settings = settings_from(args)
    if settings.mode == "external":
        raise ConfigurationError(
            "`freshdb shell` runs the client inside freshdb's container, and an external "
            "server has none — connect with your own client to `freshdb url --plain`"
        )
    server = current_server(settings)
    assert server.container is not None
    if args.snapshot is None:
        _refuse_templates(settings.prefix, args.database)
        command, environment = client_command(server.dialect, server.address, args.database)
        return exec_interactive(server.container, command, environment)
    if args.database:
        raise ConfigurationError(
            "give --database or --snapshot, not both: --snapshot opens a fresh copy of "
            "the snapshot, --database an existing database"
        )
    from freshdb.cli.snapshot_shell import snapshot_copy

    with snapshot_copy(server.dialect, server.address, settings.prefix, args.snapshot) as (
        snapshot,
        copy,
    ):
        # Sealed templates take no connections, and writes must not reach later copies.
        what = (
            f"snapshot {snapshot.name} ({snapshot.seed or 'seeded'})"
            if snapshot.is_snapshot
            else f"template {snapshot.name} ({snapshot.migrator or 'schema'})"
        )
        note(args, f"{what}: a shell on {copy}, a fresh copy of it, dropped when the shell ends")
        command, environment = client_command(server.dialect, server.address, copy)
        return exec_interactive(server.container, command, environment)


def _refuse_templates(prefix: str, database: str | None) -> None:
    parsed = naming.parse_database_name(prefix, database) if database else None
    if parsed is not None and parsed.kind == "template":
        raise ConfigurationError(
            f"{database} is a template (or a snapshot): sealed, it accepts no connections, "
            f"and a change to it would reach every later copy — `freshdb shell --snapshot "
            f"{database}` opens a fresh copy of it instead"
        )


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
    if args.export:
        # Exporting is worth it from a throwaway server too (a CI job filling the cache).
        settings = settings.replace(template_cache=args.export)
    else:
        require_lasting_mode(settings, "`freshdb warm`")
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
    verb = "restored from the cache" if stats["template_restored"] else verb
    print(f"template {stats['template']} {verb} ({migrator})")
    note(args, f"done in {time.perf_counter() - started:.2f} s")
    return 0


def command_fingerprint(args: argparse.Namespace) -> int:
    """Print the template fingerprint for the settings and schema (a CI cache key)."""
    from freshdb.migrators import as_migrator, describe
    from freshdb.template_cache.fingerprint import template_fingerprint

    settings = settings_from(args)
    migrator = as_migrator(settings.schema, dialect_for(settings.engine).sqlalchemy_name)
    fingerprint, asked = template_fingerprint(settings, migrator)
    source = "the server says" if asked else "from the image's tag"
    note(args, f"{fingerprint.server_version} ({source}), {describe(migrator)}")
    print(fingerprint.digest)
    return 0


def add_commands(add: AddCommand) -> None:
    """Add ``up``, ``url``, ``shell``, ``warm`` and ``fingerprint`` to the ``freshdb`` parser."""
    up = add("up", command_up, "start or reuse the sticky server and print its admin URL")
    up.add_argument("--plain", action="store_true", help="URL without the driver (for psql)")

    url = add("url", command_url, "print the admin URL, or one database's URL")
    url.add_argument("--database", metavar="NAME", help="the URL of this database")
    url.add_argument("--plain", action="store_true", help="URL without the driver (for psql)")
    url.add_argument("--driver", metavar="NAME", help="the URL for this driver (e.g. psycopg2)")
    url.add_argument(
        "--json", action="store_true", help="url, host, port, user, password, database, driver"
    )

    shell = add(
        "shell",
        command_shell,
        "psql or mysql inside the server's container (--snapshot: on a fresh copy of a snapshot)",
    )
    shell.add_argument("--database", metavar="NAME", help="connect to this database")
    shell.add_argument(
        "--snapshot",
        metavar="NAME",
        help="open a fresh copy of this snapshot (its name, key or a unique name prefix; "
        "dropped when the shell ends)",
    )

    warm = add("warm", command_warm, "build the template for --schema now")
    warm.add_argument(
        "--export",
        metavar="DIR",
        help="also export the template to this template cache directory (any mode)",
    )

    add(
        "fingerprint",
        command_fingerprint,
        "print the template fingerprint for --schema (the key of a CI cache step)",
    )
