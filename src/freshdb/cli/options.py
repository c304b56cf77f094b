"""What every ``freshdb`` command shares: its settings, its notes, its argument types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from freshdb.config import Settings, resolve_settings
from freshdb.dialects.base import Dialect, ServerAddress

#: The settings every command takes as options.
COMMON = ("engine", "image", "mode", "url", "prefix", "schema")

#: A command's handler: its parsed options in, its exit status out.
Handler = Callable[[argparse.Namespace], int]
#: How a command group adds a command: ``add(name, handler, help)`` returns the
#: command's parser, for its own options.
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a command: its options over the environment and pyproject.toml."""
    given = {name: getattr(args, name, None) for name in COMMON}
    if given["url"] and not given["mode"]:
        # An explicit --url means "that server", whatever mode the environment sets.
        given["mode"] = "external"
    return resolve_settings(given)


def url_text(dialect: Dialect, address: ServerAddress, database: str | None, plain: bool) -> str:
    """A server's URL (or one database's), password included; ``plain``: no driver."""
    url = dialect.sync_url(address, database)
    if plain:  # what psql and other clients take: no SQLAlchemy driver suffix
        url = url.set(drivername=url.get_backend_name())
    return url.render_as_string(hide_password=False)


def note(args: argparse.Namespace, message: str) -> None:
    """A human note on stderr (stdout stays for what scripts capture)."""
    if not args.quiet:
        print(f"freshdb: {message}", file=sys.stderr)


def non_negative(unit: str) -> Callable[[str], float]:
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
