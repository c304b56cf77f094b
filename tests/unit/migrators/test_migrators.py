"""Fingerprints change exactly when the schema would change."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from freshdb.errors import ConfigurationError
from freshdb.migrators import (
    CallableMigrator,
    ComposedMigrator,
    EmptyMigrator,
    MetadataMigrator,
    SqlMigrator,
    as_migrator,
)


def metadata(extra_column: bool = False) -> sa.MetaData:
    md = sa.MetaData()
    columns = [sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20))]
    if extra_column:
        columns.append(sa.Column("email", sa.String(50)))
    sa.Table("users", md, *columns)
    return md


def test_metadata_fingerprint_follows_the_ddl() -> None:
    assert MetadataMigrator(metadata()).fingerprint() == MetadataMigrator(metadata()).fingerprint()
    assert (
        MetadataMigrator(metadata()).fingerprint() != MetadataMigrator(metadata(True)).fingerprint()
    )
    assert any("CREATE TABLE users" in s for s in MetadataMigrator(metadata()).ddl())


def test_sql_fingerprint_follows_contents_and_names(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "002_b.sql").write_text("CREATE TABLE b (x int);")
    first = SqlMigrator(tmp_path).fingerprint()
    assert [f.name for f in SqlMigrator(tmp_path).files()] == ["001_a.sql", "002_b.sql"]
    (tmp_path / "002_b.sql").write_text("CREATE TABLE b (x bigint);")
    assert SqlMigrator(tmp_path).fingerprint() != first
    (tmp_path / "003_c.sql").write_text("SELECT 1;")
    assert len(SqlMigrator(tmp_path).files()) == 3


def test_callable_fingerprint_from_source_or_key() -> None:
    def build(connection: sa.Connection) -> None:
        connection.exec_driver_sql("CREATE TABLE t (x int)")

    def other(connection: sa.Connection) -> None:
        connection.exec_driver_sql("CREATE TABLE u (x int)")

    assert CallableMigrator(build).fingerprint() != CallableMigrator(other).fingerprint()
    assert (
        CallableMigrator(build, key="v1").fingerprint()
        != CallableMigrator(build, key="v2").fingerprint()
    )
    assert (
        CallableMigrator(build, key="v1").fingerprint()
        == CallableMigrator(other, key="v1").fingerprint()
    )


def test_composition_fingerprint_covers_every_part_in_order(tmp_path: Path) -> None:
    seed = tmp_path / "seed.sql"
    seed.write_text("INSERT INTO users VALUES (1, 'a');")
    composed = as_migrator([metadata(), seed])
    assert isinstance(composed, ComposedMigrator)
    reordered = ComposedMigrator([SqlMigrator(seed), MetadataMigrator(metadata())])
    before = composed.fingerprint()
    assert before != reordered.fingerprint()
    seed.write_text("INSERT INTO users VALUES (2, 'b');")
    assert as_migrator([metadata(), seed]).fingerprint() != before


def test_as_migrator_accepts_the_documented_forms(tmp_path: Path) -> None:
    assert isinstance(as_migrator(None), EmptyMigrator)
    assert isinstance(as_migrator(metadata()), MetadataMigrator)
    (tmp_path / "s.sql").write_text("SELECT 1;")
    assert isinstance(as_migrator(tmp_path / "s.sql"), SqlMigrator)
    assert isinstance(as_migrator(str(tmp_path)), SqlMigrator)
    assert isinstance(as_migrator(lambda c: None), CallableMigrator)
    imported = as_migrator("tests.unit.migrators.test_migrators:SCHEMA")
    assert isinstance(imported, MetadataMigrator)


SCHEMA = metadata()


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("missing/schema.sql", "does not exist"),
        ("not a thing", "neither an existing"),
        ("no_such_module_xyz:thing", "cannot import"),
        (42, "is not something freshdb can build"),
    ],
)
def test_bad_schema_says_what_to_do(schema: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        as_migrator(schema)


def test_empty_sql_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no \.sql files"):
        SqlMigrator(tmp_path).files()


def test_telling_a_metadata_apart_never_reads_a_half_imported_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A start imports SQLAlchemy in a background thread while its server starts; until
    # that import ends, sys.modules holds a module without its names. A schema that is
    # not SQLAlchemy's is told apart without looking at it at all.
    import sys
    import types

    monkeypatch.setitem(sys.modules, "sqlalchemy", types.ModuleType("sqlalchemy"))
    (tmp_path / "s.sql").write_text("CREATE TABLE t (id int);")
    assert isinstance(as_migrator(tmp_path / "s.sql"), SqlMigrator)
    assert isinstance(as_migrator(lambda c: None), CallableMigrator)
    assert isinstance(as_migrator(None), EmptyMigrator)
    monkeypatch.undo()
    assert isinstance(as_migrator(metadata()), MetadataMigrator)  # still found when it is one


class _OwnMetaData(sa.MetaData):
    """A project's subclass of MetaData, defined outside SQLAlchemy."""


def test_a_subclass_of_metadata_is_a_metadata() -> None:
    assert isinstance(as_migrator(_OwnMetaData()), MetadataMigrator)
