"""Alembic: the template is ``alembic upgrade head``, run by the project's own ``env.py``.

``AlembicMigrator("alembic.ini")`` works with the ``env.py`` that ``alembic init``
writes (sync or ``-t async``), unmodified: freshdb points Alembic at the template
database through Alembic's own configuration, the main option ``sqlalchemy.url``,
and also hands the open connection over as ``config.attributes["connection"]`` for
``env.py`` files written to share one (Alembic's "connection sharing" recipe).

An ``env.py`` that builds its URL from the application's settings instead of
``sqlalchemy.url`` needs one line so tests can point it elsewhere::

    url = config.get_main_option("sqlalchemy.url") or settings.DATABASE_URL

(or, for the connection-sharing recipe, use ``config.attributes.get("connection")``
when it is set). Alembic itself keeps working as before: ``alembic upgrade`` still
finds the application's URL when ``sqlalchemy.url`` is left empty in the ini file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from freshdb.errors import ConfigurationError, MigrationError
from freshdb.migrators.base import digest, migration_progress, shortened_statement

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import URL, Connection

#: What an ``env.py`` calls when it runs migrations on an async engine.
_ASYNC_MARKERS = ("async_engine_from_config", "create_async_engine")
#: The async driver for each sync driver freshdb hands out.
_ASYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql"}
#: Sync-driver-only URL options the async drivers do not accept.
_SYNC_ONLY_QUERY = ("ssl_disabled",)


def _import_alembic() -> Any:
    try:
        import alembic.command
        import alembic.config
        import alembic.script
        import alembic.util
    except ImportError as exc:
        raise ConfigurationError(
            "AlembicMigrator needs Alembic: pip install 'freshdb[alembic]'"
        ) from exc
    return alembic


class AlembicMigrator:
    """Runs ``alembic upgrade <revision>`` into the template database.

    ``config`` is the path of the project's ``alembic.ini`` (relative paths start at
    the working directory); ``section`` is its ``[alembic]`` section name (Alembic's
    ``-n``). The fingerprint covers every file of the versions directories (names and
    contents), ``env.py`` and ``revision``: adding, editing or removing a migration
    builds a new template, and an unchanged project reuses the old one.

    ``env.py`` reads ``sqlalchemy.url``, which freshdb sets to the template database
    (with an async driver when ``env.py`` makes an async engine); see the module
    docstring for the one-line change an ``env.py`` that builds its own URL needs.
    freshdb does not let ``env.py`` reconfigure logging from the ini file: it runs
    inside the test process, where ``fileConfig`` would silence the loggers of the
    code under test.
    """

    def __init__(
        self,
        config: str | Path = "alembic.ini",
        revision: str = "head",
        *,
        section: str = "alembic",
    ) -> None:
        self.config_path = Path(config)
        self.revision = revision
        self.section = section
        self.description = f"Alembic {self.config_path} (upgrade {revision})"

    # -- what the template is built from -----------------------------------------
    def _config(self) -> Config:
        alembic = _import_alembic()
        if not self.config_path.is_file():
            raise ConfigurationError(
                f"Alembic configuration {self.config_path} not found (working directory: "
                f"{Path.cwd()}) — give the path of the project's alembic.ini"
            )
        config: Config = alembic.config.Config(str(self.config_path), ini_section=self.section)
        if not config.file_config.has_section(self.section):
            raise ConfigurationError(
                f"{self.config_path} has no [{self.section}] section — is it an Alembic ini?"
            )
        location = config.get_main_option("script_location")
        if location and not Path(location).is_absolute() and not Path(location).exists():
            # Alembic resolves a relative script_location from the working directory;
            # tests may run elsewhere, and the ini's own directory is what was meant.
            beside = self.config_path.resolve().parent / location
            if beside.exists():
                config.set_main_option("script_location", str(beside).replace("%", "%%"))
        # file_config is parsed and kept: without a file name, env.py skips fileConfig().
        config.config_file_name = None
        return config

    def _script(self, config: Config) -> ScriptDirectory:
        alembic = _import_alembic()
        try:
            script: ScriptDirectory = alembic.script.ScriptDirectory.from_config(config)
        except alembic.util.CommandError as exc:
            raise ConfigurationError(f"{self.config_path}: {exc}") from exc
        return script

    def locations(self) -> tuple[Path, list[Path]]:
        """The project's ``env.py`` and the directories Alembic reads revisions from."""
        alembic = _import_alembic()
        script = self._script(self._config())
        env = Path(script.dir, "env.py").absolute()
        if not script.version_locations:
            return env, [Path(script.dir, "versions").absolute()]
        return env, [
            Path(alembic.util.coerce_resource_to_filename(location)).absolute()
            for location in script.version_locations
        ]

    @staticmethod
    def _version_files(directories: list[Path]) -> Iterator[tuple[str, bytes]]:
        for number, directory in enumerate(directories):
            if not directory.is_dir():
                continue
            for file in sorted(directory.rglob("*")):
                if not file.is_file() or "__pycache__" in file.parts or file.suffix == ".pyc":
                    continue
                yield f"{number}/{file.relative_to(directory).as_posix()}", file.read_bytes()

    def fingerprint(self) -> str:
        env, directories = self.locations()
        parts: list[str | bytes] = [
            "alembic",
            self.revision,
            env.read_bytes() if env.is_file() else b"",
        ]
        for name, contents in self._version_files(directories):
            parts += [name, contents]
        return digest(*parts)

    # -- building ----------------------------------------------------------------
    def uses_async_engine(self) -> bool:
        """Whether ``env.py`` runs migrations on an async engine (``alembic init -t async``)."""
        env, _ = self.locations()
        text = env.read_text(errors="replace") if env.is_file() else ""
        return any(marker in text for marker in _ASYNC_MARKERS)

    def migrate(self, connection: Connection) -> None:
        from sqlalchemy.exc import InvalidRequestError

        url = connection.engine.url
        asynchronous = self.uses_async_engine()
        try:
            self._upgrade(connection, async_url(url) if asynchronous else url)
        except InvalidRequestError as exc:
            # An env.py that makes an async engine in a way not recognised from its
            # text: the engine is refused before any migration ran, so retrying is safe.
            if asynchronous or "async" not in str(exc):
                raise
            self._upgrade(connection, async_url(url))

    def _upgrade(self, connection: Connection, url: URL) -> None:
        alembic = _import_alembic()
        config = self._config()
        # configparser interpolates %: a password containing % must be escaped.
        config.set_main_option(
            "sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%")
        )
        config.attributes["connection"] = connection
        versions = [directory.resolve() for directory in self.locations()[1]]
        try:
            _upgrade_with_progress(alembic, config, self.revision)
        except Exception as exc:
            failed = _failed_revision(exc.__traceback__, versions)
            if failed is None:
                raise
            raise MigrationError(
                f"Alembic migration {failed} failed: {_server_message(exc)}\n"
                "Fix the migration; no template was marked complete, so the next run "
                "builds it again"
            ) from exc


def _upgrade_with_progress(alembic: Any, config: Config, revision: str) -> None:
    """``alembic upgrade revision``, telling :func:`migration_progress` of each revision.

    What ``alembic.command.upgrade`` does, with its plan of steps handed to Alembic
    one at a time, each announced as it starts. An Alembic without the plan's
    method (it is not public) upgrades the same way, without progress.
    """
    script = alembic.script.ScriptDirectory.from_config(config)
    plan = getattr(script, "_upgrade_revs", None)
    if plan is None:
        alembic.command.upgrade(config, revision)
        return

    def upgrade(current: Any, context: Any) -> Iterator[Any]:
        steps = list(plan(revision, current))
        for number, step in enumerate(steps, 1):
            migration_progress(number, len(steps), str(getattr(step, "short_log", step)))
            yield step

    from alembic.runtime.environment import EnvironmentContext

    with EnvironmentContext(config, script, fn=upgrade, destination_rev=revision):
        script.run_env()


def async_url(url: URL) -> URL:
    """The same database with the async driver freshdb uses for the engine family."""
    family = url.get_backend_name()
    driver = _ASYNC_DRIVERS.get("mysql" if family == "mariadb" else family)
    if driver is None:
        return url
    query = {k: v for k, v in url.query.items() if k not in _SYNC_ONLY_QUERY}
    return url.set(drivername=driver, query=query)


def _failed_revision(tb: TracebackType | None, versions: list[Path]) -> str | None:
    """The revision whose code raised: the innermost traceback frame in a versions file."""
    found: str | None = None
    while tb is not None:
        frame = tb.tb_frame
        filename = Path(frame.f_code.co_filename)
        if any(_is_within(filename, directory) for directory in versions):
            revision = frame.f_globals.get("revision")
            message = _first_line(str(frame.f_globals.get("__doc__") or ""))
            found = f"{filename.name} (revision {revision}" + (
                f", {message!r})" if message else ")"
            )
        tb = tb.tb_next
    return found


def _is_within(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory)
    except ValueError:
        return False
    return True


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _server_message(exc: BaseException) -> str:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        statement = shortened_statement(str(exc.statement or ""))
        return f"{str(exc.orig).strip()}\n    in statement: {statement}"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["AlembicMigrator", "async_url"]
