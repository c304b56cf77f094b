"""The ``freshdb`` command: see and manage the servers, templates and copies freshdb runs.

Every command resolves the same settings as the library (options > ``FRESHDB_*``
environment > ``[tool.freshdb]`` in pyproject.toml > defaults). Exit status: 0 on
success, 1 on failure (one line on stderr saying why), 2 on a usage error.

One module per command group, each adding its commands with ``add_commands``:
:mod:`~freshdb.cli.server_commands` (``up``, ``url``, ``shell``, ``warm``, ``fingerprint``) and
:mod:`~freshdb.cli.housekeeping` (``status``, ``prune``, ``down``). The facts and the
removals are :mod:`freshdb.cleanup`'s; the commands parse options and present
results (:mod:`~freshdb.cli.presentation`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import docker.errors

from freshdb._version import __version__
from freshdb.cli import housekeeping, server_commands
from freshdb.cli.options import AddCommand, Handler
from freshdb.errors import FreshDBError, one_line

#: Every command group, in the order ``freshdb --help`` lists them.
COMMAND_GROUPS: tuple[Callable[[AddCommand], None], ...] = (
    server_commands.add_commands,
    housekeeping.add_commands,
)


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

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    for add_commands in COMMAND_GROUPS:
        add_commands(command)
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
