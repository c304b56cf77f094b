"""Django: the template is ``manage.py migrate``, run in this process.

``DjangoMigrator("proj.settings")`` points a ``DATABASES`` alias at the template
database for the duration of ``migrate`` (host, port, name, user and password of
the freshdb server; the project's own credentials are never used), then closes the
connection and puts the alias back as it was.

Why in-process rather than in a subprocess: the processes that need a template are
Django's own (the test runner, pytest-django), where settings are already loaded and
``django.setup()`` has run; a subprocess would import the project a second time (a
second or more per build) and could not see settings made by ``settings.configure()``.
Django's connections are per thread and opened lazily, so repointing one alias for
the duration of ``migrate`` and closing it afterwards leaves nothing behind.

MySQL/MariaDB: Django's mysql backend imports ``MySQLdb`` (mysqlclient, a C
extension). When it is not installed, freshdb installs PyMySQL in its place
(``pymysql.install_as_MySQLdb()``, the usual way to run Django on PyMySQL; PyMySQL
declares itself a new enough mysqlclient for Django 4.2 to 5.x).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from freshdb.errors import ConfigurationError, MigrationError
from freshdb.migrators.base import digest, migration_progress

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection

#: Django's database vendors freshdb serves, and the freshdb family of each.
SERVED_VENDORS = {"postgresql": "postgres", "mysql": "mysql"}
# OPTIONS that would send the connection somewhere other than the freshdb server.
_ELSEWHERE_OPTIONS = {
    "postgresql": ("service", "passfile", "sslmode", "sslrootcert", "sslcert", "sslkey"),
    "mysql": ("read_default_file", "read_default_group", "unix_socket", "ssl", "ssl_mode"),
}


def _import_django() -> Any:
    try:
        import django
    except ImportError as exc:
        raise ConfigurationError(
            "DjangoMigrator needs Django: pip install 'freshdb[django]'"
        ) from exc
    return django


def setup_django(settings_module: str | None = None) -> None:
    """Load Django's settings and apps once per process (a no-op when already done).

    Raises ``ConfigurationError`` when Django already runs with other settings: one
    process holds one Django project.
    """
    django = _import_django()
    from django.apps import apps
    from django.conf import settings

    if settings.configured:
        loaded = getattr(settings, "SETTINGS_MODULE", None)
        if settings_module and loaded and loaded != settings_module:
            raise ConfigurationError(
                f"Django already runs with settings {loaded!r} in this process; it cannot "
                f"also load {settings_module!r} — give DjangoMigrator the same settings module"
            )
    else:
        current = os.environ.get("DJANGO_SETTINGS_MODULE")
        if settings_module:
            if current and current != settings_module:
                raise ConfigurationError(
                    f"DJANGO_SETTINGS_MODULE is {current!r} but DjangoMigrator was given "
                    f"{settings_module!r} — use one settings module"
                )
            os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
        elif not current:
            raise ConfigurationError(
                "DjangoMigrator needs the settings module: pass settings_module='proj.settings' "
                "or set DJANGO_SETTINGS_MODULE"
            )
    if not apps.ready:
        use_pymysql_if_needed(settings.DATABASES)
        django.setup()
    else:
        use_pymysql_if_needed(settings.DATABASES)


def use_pymysql_if_needed(databases: Mapping[str, Mapping[str, Any]]) -> None:
    """Let Django's mysql backend run on PyMySQL when mysqlclient is not installed."""
    if not any("mysql" in str(db.get("ENGINE", "")) for db in databases.values()):
        return
    try:
        importlib.import_module("MySQLdb")
    except ImportError:
        try:
            import pymysql
        except ImportError as exc:
            raise ConfigurationError(
                "Django's mysql backend needs mysqlclient or PyMySQL: pip install 'freshdb[mysql]'"
            ) from exc
        pymysql.install_as_MySQLdb()


def django_vendor(alias: str) -> str:
    """The vendor of a ``DATABASES`` alias (``"postgresql"``, ``"mysql"``, ``"sqlite"``...)."""
    from django.db import connections

    try:
        return str(connections[alias].vendor)
    except Exception as exc:
        raise ConfigurationError(f"DATABASES has no usable alias {alias!r}: {exc}") from exc


def check_served(alias: str) -> str:
    """The freshdb engine family for an alias; ``ConfigurationError`` if freshdb cannot serve it."""
    from django.conf import settings

    vendor = django_vendor(alias)
    family = SERVED_VENDORS.get(vendor)
    if family is None:
        engine = settings.DATABASES[alias].get("ENGINE", "?")
        raise ConfigurationError(
            f"DATABASES[{alias!r}] uses {engine} ({vendor}): freshdb serves Postgres and "
            "MySQL/MariaDB — use django.db.backends.postgresql or django.db.backends.mysql "
            "for this alias, or leave it to Django's own test database handling"
        )
    return family


def connection_settings(alias: str, url: URL) -> dict[str, Any]:
    """The ``DATABASES[alias]`` keys that point it at the database of ``url``."""
    from django.db import connections

    vendor = django_vendor(alias)
    options = {
        key: value
        for key, value in dict(connections[alias].settings_dict.get("OPTIONS") or {}).items()
        if key not in _ELSEWHERE_OPTIONS.get(vendor, ())
    }
    if vendor == "mysql" and getattr(sys.modules.get("MySQLdb"), "__name__", "") == "pymysql":
        # PyMySQL builds a TLS context on every connect (~20 ms) unless told not to.
        options["ssl_disabled"] = True
    return {
        "NAME": url.database,
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.host or "",
        "PORT": str(url.port or ""),
        "OPTIONS": options,
    }


@contextlib.contextmanager
def pointed_at(alias: str, values: Mapping[str, Any]) -> Iterator[None]:
    """Point a ``DATABASES`` alias elsewhere for a while; close it and restore it after."""
    from django.conf import settings
    from django.db import connections

    connection = connections[alias]
    dictionaries = [connection.settings_dict]
    if settings.DATABASES[alias] is not connection.settings_dict:
        dictionaries.append(settings.DATABASES[alias])
    saved = [dict(d) for d in dictionaries]
    connection.close()
    for dictionary in dictionaries:
        dictionary.update(values)
    try:
        yield
    finally:
        connection.close()
        for dictionary, original in zip(dictionaries, saved, strict=True):
            dictionary.clear()
            dictionary.update(original)


def migration_files(app_label: str) -> tuple[str | None, list[Path]]:
    """The migrations module of an app and its ``.py`` files (none if it has no migrations)."""
    from django.db.migrations.loader import MigrationLoader

    module_name, _ = MigrationLoader.migrations_module(app_label)
    if module_name is None:
        return None, []
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return module_name, []
    locations = [Path(p) for p in getattr(module, "__path__", [])]
    files = sorted(
        file
        for location in locations
        for file in location.rglob("*.py")
        if "__pycache__" not in file.parts
    )
    return module_name, files


class DjangoMigrator:
    """Runs Django's ``migrate`` for ``databases`` (aliases) into the template database.

    ``settings_module`` defaults to ``DJANGO_SETTINGS_MODULE`` (or settings already
    loaded in this process). The fingerprint covers Django's version, the settings
    module's name, the aliases, and every ``.py`` file of every installed app's
    migrations package (names and contents): adding, editing or removing a migration,
    or installing another app, builds a new template. An app without migrations
    contributes its ``models.py`` instead (``migrate --run-syncdb`` builds its tables
    from the models, as Django's own test databases do).

    Usually one alias; several aliases all migrate into the same template database
    (for routers that split apps between aliases of one server).
    """

    def __init__(
        self, settings_module: str | None = None, databases: Sequence[str] = ("default",)
    ) -> None:
        if isinstance(databases, str):
            databases = (databases,)
        if not databases:
            raise ConfigurationError("DjangoMigrator needs at least one DATABASES alias")
        self.settings_module = settings_module
        self.databases = tuple(databases)
        shown = settings_module or os.environ.get("DJANGO_SETTINGS_MODULE") or "settings"
        self.description = f"Django migrate ({shown}, {', '.join(self.databases)})"

    def fingerprint(self) -> str:
        django = _import_django()
        setup_django(self.settings_module)
        from django.apps import apps
        from django.conf import settings

        parts: list[str | bytes] = [
            "django",
            django.get_version(),
            str(getattr(settings, "SETTINGS_MODULE", None) or self.settings_module or ""),
            *self.databases,
        ]
        for app_config in apps.get_app_configs():
            module_name, files = migration_files(app_config.label)
            if not files:
                # No migrations (or disabled, as by pytest-django's --nomigrations):
                # migrate --run-syncdb builds the tables from the models instead.
                models = getattr(app_config.models_module, "__file__", None)
                files = [Path(models)] if models else []
            parts += ["app", app_config.label, module_name or "-"]
            for file in files:
                parts += [file.name, file.read_bytes()]
        return digest(*parts)

    def migrate(self, connection: Connection) -> None:
        setup_django(self.settings_module)
        from django.core.management import call_command

        url = connection.engine.url
        for alias in self.databases:
            family = check_served(alias)
            server_family = "postgres" if url.get_backend_name() == "postgresql" else "mysql"
            if family != server_family:
                raise ConfigurationError(
                    f"DATABASES[{alias!r}] is a {family} database but the freshdb server is "
                    f"{server_family} — start the server with the engine the alias uses"
                )
            with pointed_at(alias, connection_settings(alias, url)):
                try:
                    call_command(
                        migrate_command_with_progress(alias),
                        database=alias,
                        interactive=False,
                        # As Django's own test databases: apps without migrations too.
                        run_syncdb=True,
                        verbosity=0,
                        stdout=io.StringIO(),
                        stderr=io.StringIO(),
                    )
                except Exception as exc:
                    failed = failed_migration(exc.__traceback__)
                    where = f"migration {failed}" if failed else f"migrate --database {alias}"
                    raise MigrationError(
                        f"Django {where} failed: {type(exc).__name__}: {str(exc).strip()}\n"
                        "Fix the migration; no template was marked complete, so the next "
                        "run builds it again"
                    ) from exc


def migrate_command_with_progress(alias: str) -> Any:
    """The project's ``migrate`` command, telling :func:`migration_progress` of each
    migration it applies to ``alias`` (which one of how many).

    The project's own command class (an app may override ``migrate``) with Django's
    per-migration hook, ``migration_progress_callback``, extended; the total is the
    plan Django's executor makes for the (empty) database.
    """
    from django.core.management import BaseCommand, get_commands, load_command_class
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    loaded = get_commands()["migrate"]
    command_class = type(
        loaded if isinstance(loaded, BaseCommand) else load_command_class(loaded, "migrate")
    )
    executor = MigrationExecutor(connections[alias])
    total = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    applied = 0

    class MigrateWithProgress(command_class):  # type: ignore[misc,valid-type]
        def migration_progress_callback(
            self, action: str, migration: Any = None, fake: bool = False
        ) -> None:
            nonlocal applied
            if action == "apply_start" and migration is not None:
                applied += 1
                migration_progress(
                    applied, max(total, applied), f"{migration.app_label}.{migration.name}"
                )
            super().migration_progress_callback(action, migration, fake)

    # call_command names the command after its module: keep the project's.
    MigrateWithProgress.__module__ = command_class.__module__
    return MigrateWithProgress()


def failed_migration(tb: TracebackType | None) -> str | None:
    """``app_label.migration_name (file)`` of the migration whose code raised, if any."""
    from django.db.migrations import Migration

    found: str | None = None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, Migration):
            module = sys.modules.get(type(candidate).__module__)
            file = getattr(module, "__file__", None)
            found = f"{candidate.app_label}.{candidate.name}" + (
                f" ({Path(file).name})" if file else ""
            )
        tb = tb.tb_next
    return found
