"""``freshdb status``, ``prune`` and ``down``: what freshdb has here, and removing it.

The facts and the removals are :mod:`freshdb.cleanup`'s; these commands present
them (as text, or ``--json``) and set the exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from freshdb.cleanup.inventory import gather
from freshdb.cleanup.removal import prune, remove_sticky_servers
from freshdb.cleanup.retirement import DOWN_WAIT_SECONDS
from freshdb.cli.options import AddCommand, non_negative, settings_from
from freshdb.cli.presentation import server_text
from freshdb.errors import ConfigurationError


def command_status(args: argparse.Namespace) -> int:
    """Show every freshdb server in scope, its templates and its copies."""
    settings = settings_from(args)
    servers = gather(settings, all_prefixes=args.all_prefixes)
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
        print(server_text(server, settings))
    return 0


def command_prune(args: argparse.Namespace) -> int:
    """Remove stale templates, leaked copies and leaked throwaway containers."""
    settings = settings_from(args)
    max_age = dt.timedelta(hours=args.max_age) if args.max_age is not None else None
    removals = prune(settings, max_age=max_age, dry_run=args.dry_run)
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
    removals, kept = remove_sticky_servers(
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


def add_commands(add: AddCommand) -> None:
    """Add ``status``, ``prune`` and ``down`` to the ``freshdb`` parser."""
    status = add("status", command_status, "servers, templates and copies")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--all-prefixes", action="store_true", help="servers of every prefix, not just this one"
    )

    prune_parser = add(
        "prune", command_prune, "remove stale templates, leaked copies and leaked containers"
    )
    prune_parser.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    prune_parser.add_argument(
        "--max-age",
        type=non_negative("hours"),
        metavar="HOURS",
        help="also remove kept copies and throwaway containers older than this",
    )
    prune_parser.add_argument("--json", action="store_true", help="machine-readable output")

    down = add(
        "down",
        command_down,
        "stop and remove the sticky server; one in use is waited for, then kept (exit 1)",
    )
    down.add_argument("--all", action="store_true", help="every sticky server of the prefix")
    down.add_argument("--force", action="store_true", help="remove it even while sessions use it")
    down.add_argument(
        "--wait",
        type=non_negative("seconds"),
        default=DOWN_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for its sessions to end (default {DOWN_WAIT_SECONDS:g})",
    )
