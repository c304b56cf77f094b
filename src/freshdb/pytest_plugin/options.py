"""The plugin's configuration: ``--freshdb-*`` options, ``freshdb_*`` ini options, markers.

Precedence, highest first: command-line option > ini option (``pytest.ini``,
``[tool.pytest.ini_options]``, ...) > ``FRESHDB_*`` environment variables >
``[tool.freshdb]`` in ``pyproject.toml`` > defaults. The plugin decides only the
first two levels (:func:`explicit_arguments`); :func:`freshdb.config.resolve_settings`
decides the rest, so the plugin and ``DatabaseServer`` can never disagree.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from freshdb.errors import ConfigurationError

if TYPE_CHECKING:
    from freshdb.config import Settings

#: The settings the plugin offers as ``--freshdb-NAME`` and ``freshdb_NAME``.
PLUGIN_SETTINGS: dict[str, str] = {
    "engine": "database engine: postgres, mysql or mariadb",
    "image": "server image (default: the engine's official image)",
    "mode": "sticky (kept across sessions), throwaway (removed at the end) or external",
    "url": "admin URL of an existing server (implies mode external)",
    "schema": (
        "what builds the template: an import path (myapp.models:Base.metadata), a .sql "
        "file or directory, or an Alembic ini; relative paths are relative to rootdir"
    ),
    "pool_size": "copies kept ready per worker",
    "prefix": "prefix of container and database names",
    "template_cache": (
        "directory of the CI template cache: a template missing on the server is restored "
        "from it, and one built is exported to it"
    ),
    "driver": (
        "driver of the URLs tests get: psycopg (default), psycopg2, pg8000, asyncpg; "
        "pymysql (default), mysqlclient, aiomysql, asyncmy; one per family, comma-separated"
    ),
    "port": "host port the server is published on (default: a free one Docker picks)",
}
#: Settings that are whole numbers (typed in TOML configuration).
_INT_SETTINGS = ("pool_size", "port")
KEEP_FAILED = "keep_failed"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: Settings that belong to one engine: a server of another engine does not inherit them.
_ENGINE_SPECIFIC = ("image", "url", "driver", "port")


def cli_flag(name: str) -> str:
    """``pool_size`` -> ``--freshdb-pool-size``."""
    return "--freshdb-" + name.replace("_", "-")


def ini_name(name: str) -> str:
    """``pool_size`` -> ``freshdb_pool_size``."""
    return "freshdb_" + name


def register_options(parser: pytest.Parser) -> None:
    """Add the ``--freshdb-*`` command-line options and ``freshdb_*`` ini options."""
    group = parser.getgroup("freshdb", "freshdb: a fresh database for every test")
    for name, help_text in PLUGIN_SETTINGS.items():
        group.addoption(
            cli_flag(name),
            dest=ini_name(name),
            default=None,
            type=int if name in _INT_SETTINGS else str,
            help=f"{help_text} [ini: {ini_name(name)}; env: FRESHDB_{name.upper()}]",
        )
        if name in _INT_SETTINGS and pytest.version_tuple >= (8, 4):
            # Typed, so that TOML configuration ([tool.pytest], pytest.toml) takes
            # `freshdb_pool_size = 4` as written; INI files and -o give "4", also fine.
            parser.addini(ini_name(name), f"freshdb: {help_text}", type="int", default=None)
        else:
            parser.addini(ini_name(name), f"freshdb: {help_text}", default="")
    group.addoption(
        cli_flag(KEEP_FAILED),
        dest=ini_name(KEEP_FAILED),
        action="store_true",
        default=None,
        help="keep the database of every failed test and print its URL "
        f"[ini: {ini_name(KEEP_FAILED)}]",
    )
    parser.addini(
        ini_name(KEEP_FAILED),
        "freshdb: keep the database of every failed test",
        type="bool",
        default=False,
    )


def explicit_arguments(cli: Mapping[str, Any], ini: Mapping[str, Any]) -> dict[str, Any]:
    """The plugin's two levels of precedence: the CLI option, else the ini value.

    ``None`` and ``""`` mean "not given", so the setting falls through to the
    environment, pyproject.toml and defaults in :func:`freshdb.config.resolve_settings`.
    """
    arguments: dict[str, Any] = {}
    for name in PLUGIN_SETTINGS:
        for value in (cli.get(name), ini.get(name)):
            if value is not None and value != "":
                arguments[name] = value
                break
    return arguments


def explicit_arguments_of(config: pytest.Config) -> dict[str, Any]:
    """:func:`explicit_arguments` for a pytest run."""
    cli = {name: config.getoption(ini_name(name)) for name in PLUGIN_SETTINGS}
    ini = {name: config.getini(ini_name(name)) for name in PLUGIN_SETTINGS}
    return explicit_arguments(cli, ini)


def keep_failed(config: pytest.Config) -> bool:
    """Whether the databases of failed tests are kept (CLI flag, else ini option)."""
    flag = config.getoption(ini_name(KEEP_FAILED))
    return bool(flag) if flag is not None else bool(config.getini(ini_name(KEEP_FAILED)))


@dataclasses.dataclass(frozen=True)
class ServerRequest:
    """Everything that decides which server (and template) a test gets."""

    settings: Settings
    #: What builds the template: a string from the settings, or any object ``schema=``
    #: accepts when given to a marker or a fixture factory.
    schema: Any = None

    @property
    def key(self) -> tuple[Settings, object]:
        """Hashable identity: servers are cached per session by it."""
        try:
            hash(self.schema)
        except TypeError:
            return (self.settings, ("object", id(self.schema)))
        return (self.settings, self.schema)


def merge_overrides(
    base: Mapping[str, Any], base_engine: str, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Explicit arguments for a server picked by a marker or fixture factory.

    The overrides win over the run's options; when they name another engine, the
    run's image and URL (and an external mode) are left out, since those belong to
    the run's engine.
    """
    from freshdb.config import ENGINE_ALIASES

    merged = dict(base)
    engine = overrides.get("engine")
    if engine is not None and ENGINE_ALIASES.get(str(engine).lower()) != base_engine:
        for name in _ENGINE_SPECIFIC:
            merged.pop(name, None)
        if merged.get("mode") == "external":
            merged.pop("mode")
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


def resolve_schema(schema: Any, rootdir: Path) -> Any:
    """Make a schema string from the configuration usable from any working directory.

    Paths (``.sql`` files, directories, Alembic ini files) are relative to rootdir;
    for an import path, rootdir goes on ``sys.path`` as pytest's own rootdir
    conftest would put it.
    """
    if not isinstance(schema, str) or not schema:
        return schema
    path = Path(schema)
    if not path.is_absolute() and (rootdir / path).exists():
        return str(rootdir / path)
    if _IMPORT_PATH.match(schema) and not path.exists() and str(rootdir) not in sys.path:
        sys.path.insert(0, str(rootdir))
    return schema


def server_request(
    base: Mapping[str, Any],
    overrides: Mapping[str, Any],
    rootdir: Path,
    *,
    environ: Mapping[str, str] | None = None,
) -> ServerRequest:
    """Resolve the settings of the run's server, or of one picked by ``overrides``."""
    # Imported here: registering the options (every pytest run) needs none of it.
    from freshdb.config import find_pyproject, resolve_settings

    pyproject: Path | Literal[False] = find_pyproject(rootdir) or False
    overrides = dict(overrides)
    schema_override = overrides.pop("schema", None)
    base_settings = resolve_settings(base, environ=environ, pyproject=pyproject)
    arguments = merge_overrides(base, base_settings.engine, overrides) if overrides else base
    settings = resolve_settings(arguments, environ=environ, pyproject=pyproject)
    if settings.template_cache and not Path(settings.template_cache).is_absolute():
        # Like a schema path: relative to rootdir, whatever the working directory.
        settings = settings.replace(template_cache=str(rootdir / settings.template_cache))
    if schema_override is not None and not isinstance(schema_override, str):
        return ServerRequest(settings, schema_override)
    if schema_override is not None:
        settings = settings.replace(schema=schema_override)
    return ServerRequest(settings, resolve_schema(settings.schema, rootdir))


#: Marker arguments that pick a snapshot of the server's template, not the server.
SNAPSHOT_ARGUMENTS = ("snapshot", "snapshot_key")


def _marker_arguments(node: pytest.Item) -> dict[str, Any]:
    """Every ``@pytest.mark.freshdb(...)`` argument of ``node``, the closest winning."""
    arguments: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("freshdb"))):
        if len(marker.args) > 1:
            raise ConfigurationError(
                f"@pytest.mark.freshdb takes at most one positional argument (the engine), "
                f"got {marker.args!r} on {node.nodeid} — pass other settings by name"
            )
        if marker.args:
            arguments["engine"] = marker.args[0]
        arguments.update(marker.kwargs)
    return arguments


def marker_overrides(node: pytest.Item) -> dict[str, Any]:
    """Server settings from ``@pytest.mark.freshdb(...)`` markers, the closest winning.

    A positional argument is the engine: ``@pytest.mark.freshdb("mariadb")``. The
    snapshot arguments (:func:`marker_snapshot`) are left out: they pick what the
    test's copy is made from, not its server.
    """
    arguments = _marker_arguments(node)
    for name in SNAPSHOT_ARGUMENTS:
        arguments.pop(name, None)
    return arguments


@dataclasses.dataclass(frozen=True)
class SnapshotRequest:
    """A seeded state a test's copy is made from: ``seed`` once, then copies of it."""

    #: Anything ``DatabaseServer.snapshot`` accepts: a callable taking a connection, a
    #: ``.sql`` file or directory, a migrator, or an import path ``module:attribute``.
    seed: Any
    key: str | None = None


def marker_snapshot(node: pytest.Item) -> SnapshotRequest | None:
    """The snapshot ``@pytest.mark.freshdb(snapshot=seed, snapshot_key=None)`` asks for.

    ``snapshot=None`` on a closer marker (a test in a module marked with a snapshot)
    asks for the plain template again.
    """
    arguments = _marker_arguments(node)
    seed = arguments.get("snapshot")
    if seed is None:
        if arguments.get("snapshot_key") is not None:
            raise ConfigurationError(
                f"@pytest.mark.freshdb(snapshot_key=...) on {node.nodeid} needs snapshot=: "
                "the seed whose snapshot the key names"
            )
        return None
    key = arguments.get("snapshot_key")
    return SnapshotRequest(seed, None if key is None else str(key))
