"""The seed of a fixture snapshot: Django's ``loaddata`` of a test class's fixtures.

:class:`DjangoFixtures` is what :mod:`freshdb.django.fixture_snapshots` gives
``server.snapshot()``: it decides which snapshot a class's fixtures are (the
fingerprint: the alias, the labels and the fixture files' contents) and how it is
built (``loaddata`` on a copy of the template, through Django).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freshdb.errors import ConfigurationError
from freshdb.migrators.base import digest
from freshdb.migrators.django import connection_settings, pointed_at, setup_django

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class DjangoFixtures:
    """The seed of a fixture snapshot: Django's ``loaddata`` of ``labels`` into ``alias``.

    The fingerprint covers the alias, the labels (in order: later fixtures may
    overwrite earlier rows), whether sequences are reset first, and the name and
    contents of every file ``loaddata`` would read for the labels, found as the
    project's own ``loaddata`` finds them (app ``fixtures`` directories,
    ``FIXTURE_DIRS``): editing a fixture file builds a new snapshot.
    """

    def __init__(self, alias: str, labels: Sequence[str], *, reset_sequences: bool = False):
        self.alias = alias
        self.labels = tuple(labels)
        self.reset_sequences = reset_sequences
        self.description = f"Django loaddata {' '.join(self.labels)} (database {alias!r})"

    def files(self) -> list[Path]:
        """The fixture files ``loaddata`` reads for the labels, in loading order."""
        setup_django()
        from django.core import serializers
        from django.core.management import CommandError

        # What loaddata's handle() sets before it looks for files.
        command = _loaddata_command()
        command.using = self.alias
        command.app_label = None
        command.verbosity = 0
        command.format = None
        command.serialization_formats = serializers.get_public_serializer_formats()
        found: list[Path] = []
        for label in self.labels:
            try:
                found += [Path(path) for path, _directory, _name in command.find_fixtures(label)]
            except CommandError as exc:
                raise ConfigurationError(
                    f"fixture {label!r} ({self.description}): {exc} — fix the test class's "
                    "fixtures, or the fixture directories (FIXTURE_DIRS, an app's fixtures/)"
                ) from exc
        return found

    def fingerprint(self) -> str:
        """A digest of the labels, the alias and every fixture file's name and contents."""
        parts: list[str | bytes] = [
            "django-fixtures",
            self.alias,
            "reset-sequences" if self.reset_sequences else "-",
            *self.labels,
        ]
        for path in self.files():
            parts += [path.name, path.read_bytes()]
        return digest(*parts)

    def migrate(self, connection: Connection) -> None:
        """Run ``loaddata`` through Django, with ``alias`` pointed at the database being
        seeded (``connection``'s)."""
        setup_django()
        from django.core.management import call_command
        from django.test import TransactionTestCase

        with pointed_at(self.alias, connection_settings(self.alias, connection.engine.url)):
            if self.reset_sequences:
                # As TransactionTestCase does before loading a class's fixtures.
                TransactionTestCase._reset_sequences(self.alias)
            call_command("loaddata", *self.labels, verbosity=0, database=self.alias)


def _loaddata_command() -> Any:
    """An instance of the project's ``loaddata`` command (an app may override it)."""
    from django.core.management import BaseCommand, get_commands, load_command_class

    loaded = get_commands()["loaddata"]
    return loaded if isinstance(loaded, BaseCommand) else load_command_class(loaded, "loaddata")
