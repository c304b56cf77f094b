"""freshdb.compat.pytest_postgresql.loading: what load= becomes, and its fingerprints."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshdb.compat.pytest_postgresql.loading import FunctionLoad, SqlFileLoad, load_migrator
from freshdb.errors import ConfigurationError


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
