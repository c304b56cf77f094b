"""freshdb.compat.pytest_postgresql's pure logic: arguments, loads and fingerprints.

The fixtures themselves run against real servers in tests/compat/.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshdb.compat.pytest_postgresql import factories
from freshdb.compat.pytest_postgresql.loading import FunctionLoad, SqlFileLoad, load_migrator
from freshdb.errors import ConfigurationError


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"executable": "/usr/lib/postgresql/15/bin/pg_ctl"}, "no pg_ctl to find"),
        ({"startparams": "-w"}, "no pg_ctl to start"),
        ({"unixsocketdir": "/var/run"}, "not a unix socket"),
        ({"postgres_options": "-N 50"}, "its own settings"),
        ({"port": 8432}, "remove port="),
        ({"host": "localhost"}, "remove host="),
        ({"user": "me"}, "remove user="),
        ({"password": "secret"}, "remove password="),
        ({"dbname": "tests"}, "remove dbname="),
    ],
)
def test_proc_arguments_freshdb_cannot_honour_are_refused(
    arguments: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigurationError, match=said):
        factories.postgresql_proc(**arguments)  # type: ignore[arg-type]


def test_proc_accepts_the_arguments_that_mean_the_default() -> None:
    assert callable(factories.postgresql_proc(port=None, host=None, load_autocommit=False))
    assert callable(factories.postgresql_proc(port=-1, options="-c statement_timeout=1000"))


def test_proc_takes_freshdb_settings_and_refuses_other_names() -> None:
    assert callable(factories.postgresql_proc(image="postgres:16", pool_size=2))
    with pytest.raises(ConfigurationError, match=r"unknown argument\(s\) colour .*pool_size"):
        factories.postgresql_proc(colour="blue")
    with pytest.raises(ConfigurationError, match="decides engine itself"):
        factories.postgresql_proc(engine="mysql")


def test_noproc_needs_a_host_or_port_for_login_details() -> None:
    with pytest.raises(ConfigurationError, match="give its host= or port= too"):
        factories.postgresql_noproc(user="me", password="secret")
    with pytest.raises(ConfigurationError, match="give the server one way"):
        factories.postgresql_noproc(host="db", url="postgresql://postgres@db/postgres")
    with pytest.raises(ConfigurationError, match="remove dbname="):
        factories.postgresql_noproc(host="db", dbname="tests")
    assert callable(factories.postgresql_noproc(host="db", port=5433, user="me"))


def test_a_client_fixture_with_its_own_dbname_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql\.info\.dbname"):
        factories.postgresql("postgresql_proc", dbname="test")


@pytest.fixture
def loader_module(tmp_path: Path) -> Iterator[Path]:
    """An importable module ``compat_loaders`` with a loader ``seed``."""
    path = tmp_path / "compat_loaders.py"
    path.write_text("def seed(**parts):\n    return parts\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("compat_loaders", None)


def test_loads_become_steps_of_their_kind(loader_module: Path) -> None:
    def local(**parts: object) -> None:
        pass

    migrator = load_migrator(
        [Path("schema.sql"), "compat_loaders:seed", "compat_loaders.seed", local], True
    )
    kinds = [type(step) for step in migrator.migrators]  # type: ignore[attr-defined]
    assert kinds == [SqlFileLoad, FunctionLoad, FunctionLoad, FunctionLoad]
    with pytest.raises(ConfigurationError, match="takes Paths of SQL files"):
        load_migrator([42], False)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("load", "said"),
    [
        ("schema.sql", "cannot import the loader function"),
        ("seed", "for a SQL file pass a pathlib.Path"),
        ("compat_loaders:missing", "cannot import the loader function"),
    ],
)
def test_bad_import_paths_say_what_to_do(loader_module: Path, load: str, said: str) -> None:
    with pytest.raises(ConfigurationError, match=said):
        FunctionLoad(load)


def test_a_sql_file_is_fingerprinted_by_its_content_and_autocommit(tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE a (id int);")
    first = SqlFileLoad(schema, autocommit=False).fingerprint()
    assert SqlFileLoad(schema, autocommit=False).fingerprint() == first
    assert SqlFileLoad(schema, autocommit=True).fingerprint() != first
    schema.write_text("CREATE TABLE a (id bigint);")
    assert SqlFileLoad(schema, autocommit=False).fingerprint() != first
    with pytest.raises(ConfigurationError, match="cannot read the SQL file"):
        SqlFileLoad(tmp_path / "missing.sql", autocommit=False).fingerprint()


def test_a_loader_is_fingerprinted_by_its_modules_source(loader_module: Path) -> None:
    first = FunctionLoad("compat_loaders:seed").fingerprint()
    assert FunctionLoad("compat_loaders:seed").fingerprint() == first
    # A change anywhere in the module (a helper the loader calls) makes another template.
    loader_module.write_text(loader_module.read_text() + "\nHELPER = 2\n")
    sys.modules.pop("compat_loaders")
    assert FunctionLoad("compat_loaders:seed").fingerprint() != first


def test_a_loader_without_source_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cannot read the source"):
        FunctionLoad(len).fingerprint()


def test_an_async_client_fixture_with_its_own_dbname_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql_async\.info\.dbname"):
        factories.postgresql_async("postgresql_proc", dbname="test")
