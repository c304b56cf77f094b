"""The template cache's pure logic: manifests, what is refused, keys, entries on disk."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from freshdb import naming
from freshdb.backends.base import ProgramRunner, RunningServer, ServerBackend
from freshdb.cli import main
from freshdb.config import resolve_settings
from freshdb.dialects import dialect_for
from freshdb.dialects.base import ServerAddress
from freshdb.errors import FreshDBError
from freshdb.migrators import SqlMigrator
from freshdb.pytest_plugin.options import PLUGIN_SETTINGS, server_request
from freshdb.template import TemplateFingerprint
from freshdb.template_cache.cache import TemplateCache, open_template_cache
from freshdb.template_cache.dump_tools import MySQLDumpTool, PostgresDumpTool, replay_sql_script
from freshdb.template_cache.fingerprint import predicted_fingerprint, server_version_from_image
from freshdb.template_cache.manifest import (
    MANIFEST_NAME,
    CacheEntryError,
    CacheManifest,
    file_sha256,
    refusal,
)

ADDRESS = ServerAddress("127.0.0.1", 5432, "postgres", "secret", "postgres")
WANTED = TemplateFingerprint("postgres", "postgres 17", "migrator-digest")


class _NoServer(ServerBackend):
    """A backend whose server runs no programs (as an external one): for file logic only."""

    def start(self) -> RunningServer:
        raise AssertionError("not started in unit tests")

    def stop(self) -> None:
        """Nothing to stop."""


class _ContainerServer(_NoServer):
    """Says it runs programs; never asked to here."""

    @property
    def runs_programs(self) -> bool:
        return True

    def program_runner(self) -> ProgramRunner:
        raise AssertionError("no program runs in unit tests")


def manifest_for(dump: Path, wanted: TemplateFingerprint = WANTED) -> CacheManifest:
    return CacheManifest(
        fingerprint=wanted.digest,
        family=wanted.family,
        server_version=wanted.server_version,
        server_release="17.12",
        dump=dump.name,
        sha256=file_sha256(dump),
        size=dump.stat().st_size,
        created="2026-12-02T00:00:00+00:00",
        migrator="migrations/",
        database_statements=("ALTER DATABASE {name} SET search_path = 'app'",),
    )


def write_entry(directory: Path, wanted: TemplateFingerprint = WANTED) -> Path:
    entry = directory / wanted.digest
    entry.mkdir(parents=True)
    dump = entry / "template.sql"
    dump.write_bytes(b"PGDMP" + bytes(range(256)) * 8)
    (entry / MANIFEST_NAME).write_text(manifest_for(dump, wanted).to_json())
    return entry


def cache_in(directory: Path) -> TemplateCache:
    return TemplateCache(directory, dialect_for("postgres"), _ContainerServer(), ADDRESS)


# -- manifests ----------------------------------------------------------------------------
def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    dump = tmp_path / "template.sql"
    dump.write_bytes(b"data")
    manifest = manifest_for(dump)
    assert CacheManifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"format": 99}', "format 99"),
        ('{"format": 1, "fingerprint": "x"}', "incomplete"),
    ],
)
def test_a_manifest_this_freshdb_cannot_read_is_refused(text: str, reason: str) -> None:
    with pytest.raises(CacheEntryError, match=reason):
        CacheManifest.from_json(text)


def test_a_manifest_may_not_point_outside_its_entry(tmp_path: Path) -> None:
    dump = tmp_path / "template.sql"
    dump.write_bytes(b"data")
    document = json.loads(manifest_for(dump).to_json())
    document["dump"] = "../../etc/passwd"
    with pytest.raises(CacheEntryError, match="not a file"):
        CacheManifest.from_json(json.dumps(document))


def test_a_manifest_of_a_newer_freshdb_with_extra_facts_is_read(tmp_path: Path) -> None:
    dump = tmp_path / "template.sql"
    dump.write_bytes(b"data")
    document = json.loads(manifest_for(dump).to_json())
    document["compression"] = "zstd"
    assert CacheManifest.from_json(json.dumps(document)).sha256 == file_sha256(dump)


def test_an_entry_of_another_engine_version_or_template_is_refused(tmp_path: Path) -> None:
    dump = tmp_path / "template.sql"
    dump.write_bytes(b"data")
    manifest = manifest_for(dump)
    assert refusal(manifest, WANTED) is None
    other_family = dataclasses.replace(manifest, family="mysql")
    assert "made by mysql" in str(refusal(other_family, WANTED))
    other_major = dataclasses.replace(manifest, server_version="postgres 15")
    assert "postgres 15, this server is postgres 17" in str(refusal(other_major, WANTED))
    other_template = dataclasses.replace(manifest, fingerprint="0" * 64)
    assert "holds template 00000000000000000000" in str(refusal(other_template, WANTED))


# -- entries on disk ------------------------------------------------------------------------
def test_a_whole_entry_passes_its_checks(tmp_path: Path) -> None:
    write_entry(tmp_path)
    manifest = cache_in(tmp_path).check_entry(WANTED)
    assert manifest.database_statements == ("ALTER DATABASE {name} SET search_path = 'app'",)


def test_a_flipped_byte_in_the_dump_is_caught_by_the_checksum(tmp_path: Path) -> None:
    entry = write_entry(tmp_path)
    dump = entry / "template.sql"
    data = bytearray(dump.read_bytes())
    data[100] ^= 0xFF
    dump.write_bytes(bytes(data))
    with pytest.raises(CacheEntryError, match="sha256"):
        cache_in(tmp_path).check_entry(WANTED)


def test_a_truncated_or_missing_dump_is_refused(tmp_path: Path) -> None:
    entry = write_entry(tmp_path)
    dump = entry / "template.sql"
    dump.write_bytes(dump.read_bytes()[:-10])
    with pytest.raises(CacheEntryError, match="the manifest says"):
        cache_in(tmp_path).check_entry(WANTED)
    dump.unlink()
    with pytest.raises(CacheEntryError, match="missing"):
        cache_in(tmp_path).check_entry(WANTED)


def test_an_entry_without_a_manifest_is_refused(tmp_path: Path) -> None:
    entry = write_entry(tmp_path)
    (entry / MANIFEST_NAME).unlink()
    with pytest.raises(CacheEntryError, match=r"no manifest\.json"):
        cache_in(tmp_path).check_entry(WANTED)


def test_an_entry_filed_under_the_wrong_fingerprint_is_refused(tmp_path: Path) -> None:
    foreign = TemplateFingerprint("mysql", "mariadb 10.11", "migrator-digest")
    entry = write_entry(tmp_path, foreign)
    entry.rename(tmp_path / WANTED.digest)
    with pytest.raises(CacheEntryError, match="holds template"):
        cache_in(tmp_path).check_entry(WANTED)


def test_an_unusable_entry_is_replaced_by_a_new_export(tmp_path: Path) -> None:
    old = write_entry(tmp_path)
    (old / "template.sql").write_bytes(b"corrupt")
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "template.sql").write_bytes(b"good")
    TemplateCache._put_in_place(staging, old)
    assert (old / "template.sql").read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == [WANTED.digest]


def test_an_external_server_gets_no_cache_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = resolve_settings({"template_cache": str(tmp_path)}, environ={}, pyproject=False)
    dialect = dialect_for("postgres")
    with caplog.at_level("WARNING", logger="freshdb"):
        assert open_template_cache(settings, dialect, _NoServer(), ADDRESS) is None
    assert "external server" in caplog.text
    assert open_template_cache(settings, dialect, _ContainerServer(), ADDRESS) is not None
    no_cache = resolve_settings({}, environ={}, pyproject=False)
    assert open_template_cache(no_cache, dialect, _ContainerServer(), ADDRESS) is None


def test_a_cache_path_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    file = tmp_path / "cache"
    file.write_text("")
    settings = resolve_settings({"template_cache": str(file)}, environ={}, pyproject=False)
    with pytest.raises(Exception, match="not a directory"):
        open_template_cache(settings, dialect_for("postgres"), _ContainerServer(), ADDRESS)


# -- dump tools --------------------------------------------------------------------------
def test_the_mysql_dump_leaves_out_the_completion_marker() -> None:
    command, environment = MySQLDumpTool().dump_command(ADDRESS, "fdb_t_abc")
    assert f"--ignore-table=fdb_t_abc.{naming.COMPLETION_MARKER_TABLE}" in command
    assert f"--ignore-table=fdb_t_abc.{naming.COMPLETION_MARKER_PENDING_TABLE}" in command
    assert command[-1] == "fdb_t_abc"
    assert environment == {"MYSQL_PWD": "secret"}  # never on the command line
    assert "secret" not in " ".join(command)


def test_the_mysql_restore_sets_the_recorded_character_set_first(tmp_path: Path) -> None:
    dump = tmp_path / "template.sql"
    dump.write_bytes(b"")
    manifest = dataclasses.replace(
        manifest_for(dump), character_set="latin1", collation="latin1_swedish_ci"
    )
    prologue = MySQLDumpTool().restore_prologue(manifest)
    assert prologue == b"ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci;\n"
    hostile = dataclasses.replace(manifest, collation="x; DROP DATABASE mysql")
    with pytest.raises(CacheEntryError, match="x; DROP DATABASE"):
        MySQLDumpTool().restore_prologue(hostile)


class _RecordingSession:
    """Records what a replayed script sends: simple queries, and COPY blocks' data."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def execute(self, query: bytes) -> None:
        self.sent.append(("query", query))

    def cursor(self) -> _RecordingSession:
        return self

    def copy(self, statement: bytes) -> _RecordingCopy:
        return _RecordingCopy(self, statement)

    def __enter__(self) -> _RecordingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _RecordingCopy:
    def __init__(self, session: _RecordingSession, statement: bytes) -> None:
        self.session = session
        self.statement = statement
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def __enter__(self) -> _RecordingCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.sent.append((self.statement.decode(), self.data))


PLAIN_DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict AbC123

SET statement_timeout = 0;
CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$
SELECT 'x
\\restrict notskipped
\\d'
$$;
CREATE TABLE public.t (id integer, body text);

COPY public.t (id, body) FROM stdin;
1\ttab\\there
2\t\\\\.
\\.

CREATE INDEX t_id ON public.t (id);

--
-- PostgreSQL database dump complete
--

\\unrestrict AbC123
"""


def test_a_plain_dump_is_replayed_as_queries_and_copy_blocks() -> None:
    session = _RecordingSession()
    replay_sql_script(session, PLAIN_DUMP.splitlines(keepends=True))
    kinds = [kind for kind, _ in session.sent]
    assert kinds == ["query", "COPY public.t (id, body) FROM stdin", "query"]
    before, rows, after = (payload for _, payload in session.sent)
    # psql's guard skipped where pg_dump puts it; the same text in a body kept.
    assert b"AbC123" not in before + after
    assert b"\\restrict notskipped\n\\d'\n$$;" in before
    assert before.startswith(b"--\n-- PostgreSQL database dump") and b"CREATE TABLE" in before
    assert rows == b"1\ttab\\there\n2\t\\\\.\n"
    assert b"CREATE INDEX t_id" in after


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda dump: dump[: dump.index(b"2\t")], "ends inside the rows of"),
        (lambda dump: dump[: dump.index(b"CREATE INDEX")], "incomplete"),
    ],
    ids=["inside-rows", "between-statements"],
)
def test_a_truncated_plain_dump_is_refused(cut: Callable[[bytes], bytes], message: str) -> None:
    script = cut(PLAIN_DUMP)
    with pytest.raises(FreshDBError, match=message):
        replay_sql_script(_RecordingSession(), script.splitlines(keepends=True))


def test_an_entry_in_an_older_format_is_refused_not_restored(tmp_path: Path) -> None:
    dump = tmp_path / "template.pgdump"
    dump.write_bytes(b"PGDMP")
    with pytest.raises(CacheEntryError, match="another freshdb's format"):
        PostgresDumpTool().check_manifest(manifest_for(dump))


# -- the key, without a server ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("engine", "image", "expected"),
    [
        ("postgres", "postgres:17", "postgres 17"),
        ("postgres", "freshdb-local/postgres:15", "postgres 15"),
        ("postgres", "postgres:17.2-bookworm", "postgres 17"),
        ("postgres", "postgres:latest", None),
        ("postgres", "postgres", None),
        ("mariadb", "mariadb:10.11", "mariadb 10.11"),
        ("mysql", "mariadb:11.8.2", "mariadb 11.8"),
        ("mariadb", "mariadb:11", None),
        ("mysql", "mysql:9", None),
        ("mysql", "mysql:8.4", "mysql 8.4"),
        ("mysql", "registry.example:5000/team/db:8.4", None),
        ("postgres", "mariadb:10.11", None),
    ],
)
def test_the_server_version_an_image_tag_states(
    engine: str, image: str, expected: str | None
) -> None:
    assert server_version_from_image(engine, image) == expected


def test_the_predicted_fingerprint_is_the_templates(tmp_path: Path) -> None:
    (tmp_path / "001.sql").write_text("CREATE TABLE t (id int);\n")
    migrator = SqlMigrator(tmp_path)
    settings = resolve_settings(
        {"engine": "mariadb", "image": "mariadb:10.11"}, environ={}, pyproject=False
    )
    predicted = predicted_fingerprint(settings, migrator)
    # What TemplateBuilder.fingerprint gives once a MariaDB 10.11 server answers.
    assert predicted == TemplateFingerprint("mysql", "mariadb 10.11", migrator.fingerprint())
    external = resolve_settings(
        {"url": "mysql://root:x@db:3306", "engine": "mariadb"}, environ={}, pyproject=False
    )
    assert predicted_fingerprint(external, migrator) is None


def test_freshdb_fingerprint_prints_the_key_without_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "001.sql").write_text("CREATE TABLE t (id int);\n")
    monkeypatch.chdir(tmp_path)
    for name in ("FRESHDB_URL", "FRESHDB_MODE", "FRESHDB_IMAGE", "FRESHDB_POSTGRES_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    status = main(["fingerprint", "--schema", str(tmp_path), "--image", "postgres:17", "-q"])
    assert status == 0
    expected = TemplateFingerprint("postgres", "postgres 17", SqlMigrator(tmp_path).fingerprint())
    assert capsys.readouterr().out == expected.digest + "\n"


# -- configuration -------------------------------------------------------------------------
def test_the_cache_directory_comes_from_the_environment_or_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.freshdb]\ntemplate-cache = '.freshdb-cache'\n")
    assert resolve_settings({}, environ={}, pyproject=pyproject).template_cache == ".freshdb-cache"
    env = {"FRESHDB_TEMPLATE_CACHE": "/ci/cache"}
    assert resolve_settings({}, environ=env, pyproject=pyproject).template_cache == "/ci/cache"
    assert resolve_settings({}, environ={}, pyproject=False).template_cache is None


def test_the_plugin_option_is_relative_to_rootdir(tmp_path: Path) -> None:
    assert "template_cache" in PLUGIN_SETTINGS
    request = server_request({"template_cache": "ci-cache"}, {}, tmp_path, environ={})
    assert request.settings.template_cache == str(tmp_path / "ci-cache")
