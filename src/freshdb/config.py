"""Configuration: one place that decides every setting and where it came from.

Precedence, highest first: explicit arguments > ``FRESHDB_*`` environment variables
> ``[tool.freshdb]`` in the nearest ``pyproject.toml`` > defaults.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from freshdb.errors import ConfigurationError

EngineName = Literal["postgres", "mysql", "mariadb"]
ModeName = Literal["sticky", "throwaway", "external"]

ENGINES: tuple[EngineName, ...] = ("postgres", "mysql", "mariadb")
MODES: tuple[ModeName, ...] = ("sticky", "throwaway", "external")
ENGINE_ALIASES: dict[str, EngineName] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "pg": "postgres",
    "mysql": "mysql",
    "mariadb": "mariadb",
}

ENV_PREFIX = "FRESHDB_"
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,15}$")
TMPFS_SIZE_PATTERN = re.compile(r"^[1-9][0-9]*[kmg]?$", re.IGNORECASE)
DURATION_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"7d"``, ``"12h"``, ``"30m"`` or ``"90"`` (seconds)."""
    match = DURATION_PATTERN.match(str(text))
    if not match:
        raise ConfigurationError(
            f"{text!r} is not a duration: use a number with an optional unit s, m, h, d or w "
            "(e.g. '7d', '12h'; a bare number means seconds)"
        )
    return float(match[1]) * _DURATION_UNITS[match[2].lower()]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting that shapes a freshdb server, resolved and validated."""

    engine: EngineName = "postgres"
    image: str | None = None
    mode: ModeName = "sticky"
    url: str | None = None
    schema: str | None = None
    pool_size: int = 3
    #: Copies kept ready per snapshot (see :mod:`freshdb.snapshot`).
    snapshot_pool_size: int = 2
    clone_workers: int = 2
    tmpfs_size: str = "2g"
    prefix: str = "freshdb"
    host: str | None = None
    #: The host port a Docker server is published on (``None``: a free one Docker picks).
    port: int | None = None
    max_connections: int = 300
    startup_timeout: float = 60.0
    acquire_timeout: float = 60.0
    keep_templates: int = 3
    template_retention: str = "7d"
    #: A directory of exported templates (the CI template cache), or None: see
    #: :mod:`freshdb.template_cache`.
    template_cache: str | None = None
    #: The driver of the URLs tests get (psycopg2, asyncpg, mysqlclient, ...; one per
    #: engine family, comma-separated, for suites on both); unset: psycopg 3 / PyMySQL.
    driver: str | None = None
    #: Start a new container's server directly, without the official entrypoint's
    #: temporary server (see :mod:`freshdb.dialects.postgres.direct_start`); off: the
    #: image's entrypoint always runs.
    direct_start: bool = True

    @property
    def template_retention_seconds(self) -> float:
        """``template_retention`` in seconds."""
        return parse_duration(self.template_retention)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated again)."""
        return _validate(dataclasses.replace(self, **changes))


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Settings that have no meaning as an environment variable or pyproject key of their own.
_NOT_FROM_FILES = {"url"}  # a URL with a password does not belong in pyproject.toml


def _truthy(value: str | None) -> bool:
    return bool(value) and str(value).strip().lower() not in {"0", "false", "no", "off", ""}


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (the working directory)."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject(path: Path | None) -> dict[str, Any]:
    """The ``[tool.freshdb]`` table of a pyproject file, keys normalised to snake_case."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read {path}: {exc} — fix the file, or remove its [tool.freshdb] table"
        ) from exc
    table = data.get("tool", {}).get("freshdb", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"[tool.freshdb] in {path} must be a table")
    return {str(key).replace("-", "_"): value for key, value in table.items()}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any, source: str) -> Any:
    field = _FIELDS[name]
    kind = field.type if isinstance(field.type, str) else str(field.type)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ConfigurationError(
            f"{name} from {source} must be true or false (1/0, yes/no, on/off), got {value!r}"
        )
    try:
        if kind in ("int", "int | None"):
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} from {source} must be a number, got {value!r}") from None
    return None if value is None else str(value)


def resolve_settings(
    arguments: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    pyproject: Path | Literal[False] | None = None,
) -> Settings:
    """Decide every setting: arguments > environment > pyproject.toml > defaults.

    ``arguments`` holds explicit values (``None`` means "not given"). ``environ``
    defaults to ``os.environ``; ``pyproject`` is searched upwards from the working
    directory unless a path is given, or ``False`` to ignore pyproject files.
    """
    env = os.environ if environ is None else environ
    given = {k: v for k, v in (arguments or {}).items() if v is not None}
    unknown = set(given) - set(_FIELDS)
    if unknown:
        raise ConfigurationError(f"unknown freshdb setting(s): {', '.join(sorted(unknown))}")
    file_values: dict[str, Any] = {}
    file_source = "pyproject.toml"
    if pyproject is not False:
        path = pyproject if pyproject is not None else find_pyproject()
        file_values = read_pyproject(path)
        file_source = f"[tool.freshdb] in {path}"
        unknown = set(file_values) - set(_FIELDS) - {f"{e}_image" for e in ENGINES}
        if unknown:
            raise ConfigurationError(
                f"unknown key(s) in {file_source}: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(set(_FIELDS) - _NOT_FROM_FILES))})"
            )
        if "url" in file_values:
            raise ConfigurationError(
                f"{file_source} sets url: keep server URLs (and their passwords) out of "
                "pyproject.toml — pass url= or set FRESHDB_URL"
            )

    values: dict[str, Any] = {}
    for name in _FIELDS:
        if name in given:
            values[name] = _coerce(name, given[name], "the arguments")
        elif (ENV_PREFIX + name.upper()) in env and env[ENV_PREFIX + name.upper()] != "":
            values[name] = _coerce(name, env[ENV_PREFIX + name.upper()], ENV_PREFIX + name.upper())
        elif name in file_values:
            values[name] = _coerce(name, file_values[name], file_source)

    engine = ENGINE_ALIASES.get(str(values.get("engine", "postgres")).lower())
    if engine is None:
        raise ConfigurationError(
            f"unknown engine {values.get('engine')!r}: freshdb serves "
            "'postgres', 'mysql' and 'mariadb'"
        )
    values["engine"] = engine

    # The image: an argument, then FRESHDB_<ENGINE>_IMAGE, FRESHDB_IMAGE, then the
    # pyproject's <engine>_image and image keys. Engine-specific beats generic at
    # each level, so one environment can configure servers of several engines.
    if "image" in given:
        values["image"] = str(given["image"])
    else:
        specific_env = env.get(f"{ENV_PREFIX}{engine.upper()}_IMAGE")
        generic_env = env.get(f"{ENV_PREFIX}IMAGE")
        specific_file = file_values.get(f"{engine}_image")
        generic_file = file_values.get("image")
        chosen = specific_env or generic_env or specific_file or generic_file
        values["image"] = str(chosen) if chosen else None

    if "mode" not in values:
        if values.get("url"):
            values["mode"] = "external"
        elif _truthy(env.get("CI")):
            values["mode"] = "throwaway"
    if values.get("mode", "sticky") != "external":
        # An explicit sticky/throwaway mode wins over a URL from a lower level.
        values["url"] = None
    return _validate(Settings(**values))


def _validate(settings: Settings) -> Settings:
    if settings.engine not in ENGINES:
        raise ConfigurationError(
            f"unknown engine {settings.engine!r}: freshdb serves 'postgres', 'mysql' and 'mariadb'"
        )
    if settings.mode not in MODES:
        raise ConfigurationError(
            f"unknown mode {settings.mode!r}: use 'sticky' (a container kept across "
            "sessions), 'throwaway' (removed at the end) or 'external' (an existing server "
            "given by url= or FRESHDB_URL)"
        )
    if settings.mode == "external" and not settings.url:
        raise ConfigurationError(
            "mode 'external' needs the admin URL of an existing server: pass url= or set "
            "FRESHDB_URL (e.g. postgresql://postgres:secret@localhost:5432/postgres)"
        )
    if settings.url:
        check_url(settings.url)
    if not PREFIX_PATTERN.match(settings.prefix):
        raise ConfigurationError(
            f"prefix {settings.prefix!r} is not usable in database and container names: use "
            "1-16 lowercase letters and digits, starting with a letter (e.g. 'freshdb')"
        )
    if settings.pool_size < 0 or settings.pool_size > 64:
        raise ConfigurationError(f"pool_size must be between 0 and 64, got {settings.pool_size}")
    if not 0 <= settings.snapshot_pool_size <= 64:
        raise ConfigurationError(
            f"snapshot_pool_size must be between 0 and 64, got {settings.snapshot_pool_size}"
        )
    if not 1 <= settings.clone_workers <= 16:
        raise ConfigurationError(
            f"clone_workers must be between 1 and 16, got {settings.clone_workers}"
        )
    if not TMPFS_SIZE_PATTERN.match(settings.tmpfs_size):
        raise ConfigurationError(
            f"tmpfs_size {settings.tmpfs_size!r} is not a size: use e.g. '512m' or '2g'"
        )
    if settings.port is not None and not 1 <= settings.port <= 65535:
        raise ConfigurationError(
            f"port must be a TCP port between 1 and 65535, got {settings.port} — or leave it "
            "unset to let Docker pick a free one"
        )
    if settings.max_connections < 20:
        raise ConfigurationError(
            f"max_connections must be at least 20, got {settings.max_connections}"
        )
    for name in ("startup_timeout", "acquire_timeout"):
        if cast(float, getattr(settings, name)) <= 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds")
    if settings.keep_templates < 1:
        raise ConfigurationError("keep_templates must be at least 1")
    try:
        parse_duration(settings.template_retention)
    except ConfigurationError as exc:
        raise ConfigurationError(f"template_retention: {exc}") from None
    if settings.driver is not None:
        from freshdb.drivers import configured_driver  # SQLAlchemy: only when a driver is set

        configured_driver(settings.driver, settings.engine)
    return settings


def check_url(url: str) -> None:
    """Raise ``ConfigurationError`` unless ``url`` is a usable server URL."""
    # Imported here: settings are resolved when pytest loads the plugin, which must
    # not cost a SQLAlchemy import in a run that uses no database.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"malformed server URL {_redact(url)!r}: expected e.g. "
            "postgresql://USER:PASSWORD@HOST:5432/postgres or mysql://root:PASSWORD@HOST:3306"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in {"postgresql", "postgres", "mysql", "mariadb"}:
        raise ConfigurationError(
            f"server URL scheme {backend!r} is not served: use postgresql://, mysql:// "
            "or mariadb://"
        )
    if not parsed.host:
        raise ConfigurationError(f"server URL {_redact(url)!r} names no host")


def _redact(url: str) -> str:
    """The URL with its password masked, even when it is malformed (a typo such as
    ``postgresql//user:secret@host`` must not put the password in an error)."""
    userinfo, at, host = url.rpartition("@")
    if not at:
        return url
    scheme, slashes, credentials = userinfo.rpartition("//")
    user, colon, _ = credentials.partition(":")
    if not colon:
        return url
    return f"{scheme}{slashes}{user}:***@{host}"
