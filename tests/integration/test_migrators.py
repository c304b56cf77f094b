"""Templates built from what projects already have: Alembic, SQL files, Django.

Every project is made inside the test (``alembic init`` through Alembic's command
API, a small Django project on disk) and migrated into real servers. Each project
carries a random token in one migration, so its fingerprint is its own and "built"
versus "reused" is this test's doing alone.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import freshdb
from freshdb.errors import MigrationError
from freshdb.migrators import (
    AlembicMigrator,
    ComposedMigrator,
    DjangoMigrator,
    SqlMigrator,
    as_migrator,
    progress_reported_to,
)

from ..conftest import ENGINES, ServerUnderTest, image_for, run_python
from . import django_project
from .conftest import sticky_server

pytestmark = [pytest.mark.docker, pytest.mark.server]

KEEP_TEMPLATES = 64

REVISIONS: list[tuple[str, str, str | None, str, str]] = [
    (
        "0001_authors.py",
        "0001",
        None,
        "create authors",
        """
        op.create_table(
            "authors",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False),
        )
        """,
    ),
    (
        "0002_books.py",
        "0002",
        "0001",
        "create books",
        """
        op.create_table(
            "books",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("author_id", sa.Integer, sa.ForeignKey("authors.id"), nullable=False),
            sa.Column("title", sa.String(200), nullable=False),
        )
        """,
    ),
    (
        "0003_titles.py",
        "0003",
        "0002",
        "index book titles",
        """
        op.create_index("ix_books_title", "books", ["title"])
        """,
    ),
]


def write_revision(
    versions: Path, filename: str, revision: str, down: str | None, message: str, body: str
) -> Path:
    """An Alembic revision file that logs each run to ``runs.log`` beside alembic.ini."""
    path = versions / filename
    path.write_text(
        f'"""{message}"""\n'
        "from pathlib import Path\n\n"
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {revision!r}\n"
        f"down_revision = {down!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade():\n"
        '    with open(Path(__file__).resolve().parents[2] / "runs.log", "a") as log:\n'
        "        log.write(revision + '\\n')\n"
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        + "\n\n\ndef downgrade():\n    pass\n"
    )
    return path


def alembic_project(root: Path, *, template: str = "generic") -> Path:
    """``alembic init`` into ``root`` (env.py untouched), plus three revisions."""
    from alembic import command
    from alembic.config import Config

    ini = root / "alembic.ini"
    command.init(Config(str(ini)), str(root / "migrations"), template=template)
    versions = root / "migrations" / "versions"
    for filename, revision, down, message, body in REVISIONS:
        write_revision(versions, filename, revision, down, message, body)
    # The token makes this project's fingerprint its own.
    token = secrets.token_hex(6)
    first = versions / REVISIONS[0][0]
    first.write_text(first.read_text() + f"\n# token: {token}\n")
    return ini


def runs(root: Path) -> list[str]:
    """The revisions that ran so far, in order, across builds."""
    log = root / "runs.log"
    return log.read_text().split() if log.exists() else []


def server_for(
    engine: str, image: str, prefix: str, schema: Any, pool_size: int = 2
) -> freshdb.DatabaseServer:
    return sticky_server(
        engine,
        image,
        prefix,
        schema=schema,
        pool_size=pool_size,
        # Other tests build templates on this run's server too: keep them all, so
        # "reused" depends on this test alone.
        keep_templates=KEEP_TEMPLATES,
    )


def describe_copy(url: sa.URL) -> dict[str, Any]:
    """What a copy holds: tables, columns, foreign keys, indexes, alembic version, rows."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        inspector = sa.inspect(engine)
        tables = sorted(inspector.get_table_names())
        facts: dict[str, Any] = {
            "tables": tables,
            "columns": {t: sorted(c["name"] for c in inspector.get_columns(t)) for t in tables},
            "foreign_keys": {
                t: sorted(fk["referred_table"] for fk in inspector.get_foreign_keys(t))
                for t in tables
            },
            "indexes": {
                t: sorted(str(i["name"]) for i in inspector.get_indexes(t)) for t in tables
            },
        }
        with engine.connect() as conn:
            if "alembic_version" in tables:
                facts["version"] = conn.execute(
                    sa.text("SELECT version_num FROM alembic_version")
                ).scalar()
            facts["rows"] = {
                t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar()
                for t in tables
                if not t.startswith("freshdb")
            }
        return facts
    finally:
        engine.dispose()


def start_and_look(
    server: freshdb.DatabaseServer, copies: int = 2
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start the server; return its stats and what each of ``copies`` copies holds."""
    with server:
        stats = server.stats()
        seen = []
        for _ in range(copies):
            with server.database() as db:
                seen.append(describe_copy(db.url))
        return stats, seen


def expect_alembic_schema(copy: dict[str, Any], version: str = "0003") -> None:
    assert {"alembic_version", "authors", "books"} <= set(copy["tables"])
    assert copy["foreign_keys"]["books"] == ["authors"]
    assert "ix_books_title" in copy["indexes"]["books"]
    assert copy["version"] == version


@pytest.mark.compat
# -- Alembic -----------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_alembic_project_template_is_built_once_and_follows_the_migrations(
    engine: str, tmp_path: Path, run_prefix: str
) -> None:
    image = image_for(engine)
    ini = alembic_project(tmp_path)
    migrator = AlembicMigrator(ini)
    first_fingerprint = migrator.fingerprint()

    stats, copies = start_and_look(server_for(engine, image, run_prefix, migrator))
    assert stats["template_reused"] is False
    for copy in copies:
        expect_alembic_schema(copy)
    assert runs(tmp_path) == ["0001", "0002", "0003"]

    # Unchanged project, new session: the template is reused, no migration runs again.
    stats, copies = start_and_look(server_for(engine, image, run_prefix, AlembicMigrator(ini)))
    assert stats["template_reused"] is True
    expect_alembic_schema(copies[0])
    assert runs(tmp_path) == ["0001", "0002", "0003"]

    # Editing a migration: a new fingerprint, a new template with the change.
    versions = tmp_path / "migrations" / "versions"
    write_revision(
        versions,
        "0003_titles.py",
        "0003",
        "0002",
        "index book titles, add isbn",
        """
        op.create_index("ix_books_title", "books", ["title"])
        op.add_column("books", sa.Column("isbn", sa.String(13)))
        """,
    )
    edited_fingerprint = migrator.fingerprint()
    assert edited_fingerprint != first_fingerprint
    stats, copies = start_and_look(server_for(engine, image, run_prefix, migrator))
    assert stats["template_reused"] is False
    assert "isbn" in copies[0]["columns"]["books"]
    assert runs(tmp_path)[3:] == ["0001", "0002", "0003"]

    # Adding a migration: another template, at the new head.
    added = write_revision(
        versions,
        "0004_reviews.py",
        "0004",
        "0003",
        "create reviews",
        """
        op.create_table(
            "reviews",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("book_id", sa.Integer, sa.ForeignKey("books.id")),
        )
        """,
    )
    assert migrator.fingerprint() not in (first_fingerprint, edited_fingerprint)
    stats, copies = start_and_look(server_for(engine, image, run_prefix, migrator), copies=1)
    assert stats["template_reused"] is False
    expect_alembic_schema(copies[0], version="0004")
    assert copies[0]["foreign_keys"]["reviews"] == ["books"]

    # Removing it again: the fingerprint of the edited project, whose template exists.
    added.unlink()
    assert migrator.fingerprint() == edited_fingerprint
    count = len(runs(tmp_path))
    stats, copies = start_and_look(server_for(engine, image, run_prefix, migrator), copies=1)
    assert stats["template_reused"] is True
    assert "reviews" not in copies[0]["tables"]
    assert len(runs(tmp_path)) == count


def test_async_alembic_template_on_postgres(
    tmp_path: Path, run_prefix: str, postgres_image: str
) -> None:
    ini = alembic_project(tmp_path, template="async")
    env_py = (tmp_path / "migrations" / "env.py").read_text()
    assert "async_engine_from_config" in env_py  # the unmodified async template
    migrator = AlembicMigrator(ini)
    assert migrator.uses_async_engine()

    stats, copies = start_and_look(server_for("postgres", postgres_image, run_prefix, migrator))
    assert stats["template_reused"] is False
    for copy in copies:
        expect_alembic_schema(copy)
    assert runs(tmp_path) == ["0001", "0002", "0003"]


def test_async_alembic_template_on_the_mysql_family(
    tmp_path: Path, run_prefix: str, mysql_family: ServerUnderTest
) -> None:
    ini = alembic_project(tmp_path, template="async")
    migrator = AlembicMigrator(ini)
    stats, copies = start_and_look(
        server_for(mysql_family.engine, mysql_family.image, run_prefix, migrator), copies=1
    )
    assert stats["template_reused"] is False
    expect_alembic_schema(copies[0])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_broken_alembic_migration_is_named_and_leaves_no_template(
    engine: str, tmp_path: Path, run_prefix: str
) -> None:
    image = image_for(engine)
    ini = alembic_project(tmp_path)
    write_revision(
        tmp_path / "migrations" / "versions",
        "0004_broken.py",
        "0004",
        "0003",
        "rename a table that does not exist",
        """
        op.rename_table("no_such_table", "still_none")
        """,
    )
    server = server_for(engine, image, run_prefix, AlembicMigrator(ini), pool_size=0)
    with pytest.raises(MigrationError) as failure:
        server.start()
    message = str(failure.value)
    assert "0004_broken.py" in message
    assert "revision 0004" in message
    assert "no_such_table" in message  # the server's own words

    # Fixing it: the next start builds the template from scratch.
    write_revision(
        tmp_path / "migrations" / "versions",
        "0004_broken.py",
        "0004",
        "0003",
        "fixed",
        """
        op.rename_table("books", "volumes")
        """,
    )
    stats, copies = start_and_look(
        server_for(engine, image, run_prefix, AlembicMigrator(ini)), copies=1
    )
    assert stats["template_reused"] is False
    assert "volumes" in copies[0]["tables"] and "books" not in copies[0]["tables"]


def test_alembic_with_seed_sql_composes(
    tmp_path: Path, run_prefix: str, postgres_image: str
) -> None:
    ini = alembic_project(tmp_path)
    seed = tmp_path / "seed.sql"
    seed.write_text(
        "INSERT INTO authors (id, name) VALUES (1, 'Ada');\n"
        "INSERT INTO books (id, author_id, title) VALUES (1, 1, 'Notes'), (2, 1, 'Letters');\n"
    )
    schema = [AlembicMigrator(ini), SqlMigrator(seed)]
    composed = as_migrator(schema)
    assert isinstance(composed, ComposedMigrator)
    stats, copies = start_and_look(server_for("postgres", postgres_image, run_prefix, schema))
    assert stats["template_reused"] is False
    for copy in copies:
        expect_alembic_schema(copy)
        assert copy["rows"]["authors"] == 1 and copy["rows"]["books"] == 2

    # Changing only the seed data builds a new template; the migrations run again in it.
    before = as_migrator(schema).fingerprint()
    seed.write_text(seed.read_text() + "INSERT INTO authors (id, name) VALUES (2, 'Grace');\n")
    assert as_migrator(schema).fingerprint() != before
    stats, copies = start_and_look(
        server_for("postgres", postgres_image, run_prefix, schema), copies=1
    )
    assert stats["template_reused"] is False
    assert copies[0]["rows"]["authors"] == 2


def test_an_alembic_ini_is_a_schema_string_and_works_from_the_pytest_plugin(
    tmp_path: Path, run_prefix: str, postgres_image: str
) -> None:
    ini = alembic_project(tmp_path)
    assert isinstance(as_migrator(str(ini)), AlembicMigrator)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfreshdb_schema = alembic.ini\n")
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa

            def test_books_and_authors(freshdb_connection):
                tables = sa.inspect(freshdb_connection).get_table_names()
                assert {"authors", "books", "alembic_version"} <= set(tables)
                query = sa.text("SELECT version_num FROM alembic_version")
                assert freshdb_connection.execute(query).scalar() == "0003"
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--freshdb-mode=sticky",
            f"--freshdb-prefix={run_prefix}",
            f"--freshdb-image={postgres_image}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={k: v for k, v in os.environ.items() if k != "CI"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert runs(tmp_path) == ["0001", "0002", "0003"]


# -- SQL files -----------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_sql_directory_template_follows_its_files(
    engine: str, tmp_path: Path, run_prefix: str
) -> None:
    image = image_for(engine)
    token = secrets.token_hex(6)
    (tmp_path / "001_tables.sql").write_text(
        f"-- {token}\nCREATE TABLE authors (id integer PRIMARY KEY, name varchar(100));\n"
        "CREATE TABLE books (id integer PRIMARY KEY, author_id integer NOT NULL "
        "REFERENCES authors (id), title varchar(200));\n"
    )
    (tmp_path / "002_seed.sql").write_text("INSERT INTO authors VALUES (1, 'Ada');\n")
    stats, copies = start_and_look(server_for(engine, image, run_prefix, tmp_path))
    assert stats["template_reused"] is False
    for copy in copies:
        assert copy["foreign_keys"]["books"] == ["authors"]
        assert copy["rows"]["authors"] == 1
    stats, _ = start_and_look(server_for(engine, image, run_prefix, tmp_path), copies=1)
    assert stats["template_reused"] is True

    (tmp_path / "003_more.sql").write_text("INSERT INTO books VALUES (1, 1, 'Notes');\n")
    stats, copies = start_and_look(server_for(engine, image, run_prefix, tmp_path), copies=1)
    assert stats["template_reused"] is False
    assert copies[0]["rows"]["books"] == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_sql_files_report_each_file_as_a_step(engine: str, tmp_path: Path, run_prefix: str) -> None:
    (tmp_path / "001_authors.sql").write_text("CREATE TABLE authors (id integer);\n")
    (tmp_path / "002_books.sql").write_text("CREATE TABLE books (id integer);\n")
    (tmp_path / "003_seed.sql").write_text("INSERT INTO authors VALUES (1);\n")
    steps: list[tuple[int, int, str]] = []
    server = server_for(engine, image_for(engine), run_prefix, None, pool_size=1)
    with server, server.database() as db, db.engine().connect() as connection:
        with progress_reported_to(lambda *step: steps.append(step)):
            SqlMigrator(tmp_path).migrate(connection)
        assert connection.exec_driver_sql("SELECT id FROM authors").scalar() == 1
    assert steps == [(1, 3, "001_authors.sql"), (2, 3, "002_books.sql"), (3, 3, "003_seed.sql")]


POSTGRES_AS_PSQL = r"""-- {token}
CREATE TYPE mood AS ENUM ('sad');
ALTER TYPE mood ADD VALUE 'happy';
-- Using the value just added needs the statement before committed, as psql does.
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, mood mood DEFAULT 'happy');
INSERT INTO notes (body) VALUES ('C:\dir\'), ('it''s; fine'), (E'tab\t; \\ and \'quoted\'');
-- psql follows the server: with this off, '' strings take backslash escapes.
SET standard_conforming_strings = off;
INSERT INTO notes (body) VALUES ('old\'style; escape');
SET standard_conforming_strings = on;
CREATE FUNCTION shout(t text) RETURNS text LANGUAGE plpgsql AS $body$
BEGIN
    -- a ; and a ' in a comment, $$ in a body
    RETURN upper(t) || '!;$$';
END;
$body$;
CREATE FUNCTION add_one(x int) RETURNS int LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
    SELECT CASE WHEN x IS NULL THEN 0 ELSE x + 1 END;
END;
CREATE PROCEDURE add_note(b text) LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO notes (body) VALUES (b);
    INSERT INTO notes (body) VALUES (b || '; again');
END;
/* a nested /* comment; */ still a comment */
CREATE INDEX CONCURRENTLY notes_body_idx ON notes (body);
-- Data inline, as pg_dump writes it.
CREATE TABLE copied (id int, label text);
COPY public.copied (id, label) FROM stdin;
1{tab}semi; colon and 'quote
2{tab}\N
\.
"""

MARIADB_AS_MYSQL = r"""-- {token}
CREATE TABLE accounts (
    id int PRIMARY KEY AUTO_INCREMENT, owner varchar(100), balance int NOT NULL DEFAULT 0
);
CREATE TABLE audit (id int PRIMARY KEY AUTO_INCREMENT, note varchar(200));
# a hash comment; with a ' quote
DELIMITER //
CREATE PROCEDURE deposit(IN who int, IN amount int)
BEGIN
    UPDATE accounts SET balance = balance + amount WHERE id = who;
    INSERT INTO audit (note) VALUES (CONCAT('deposit; ', amount));
END //
CREATE TRIGGER accounts_opened AFTER INSERT ON accounts FOR EACH ROW
BEGIN
    INSERT INTO audit (note) VALUES (CONCAT('opened ', NEW.owner, ';'));
END//
DELIMITER ;
DELIMITER $$
CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC
BEGIN
    RETURN x * 2;
END$$
DELIMITER ;
INSERT INTO accounts (owner, balance) VALUES ('it\'s; ada', 10), ("say \"hi\"", 20), ('b\\', 30);
-- The mysql client follows the server: with NO_BACKSLASH_ESCAPES, '\' is a whole string.
SET @saved_mode = @@sql_mode;
SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');
INSERT INTO accounts (owner, balance) VALUES ('C:\dir\', 40);
SET sql_mode = @saved_mode;
/*!40101 SET @freshdb_unused = 1 */;
"""


def test_sql_files_run_as_psql_runs_them(
    tmp_path: Path, run_prefix: str, postgres_image: str
) -> None:
    schema = POSTGRES_AS_PSQL.format(token=secrets.token_hex(6), tab="\t")
    (tmp_path / "schema.sql").write_text(schema)
    with server_for("postgres", postgres_image, run_prefix, tmp_path, pool_size=1) as server:
        for _ in range(2):  # each copy works on its own
            with server.database() as db, db.engine().begin() as conn:
                bodies = conn.exec_driver_sql("SELECT body, mood FROM notes ORDER BY id").all()
                assert [tuple(row) for row in bodies] == [
                    ("C:\\dir\\", "happy"),
                    ("it's; fine", "happy"),
                    ("tab\t; \\ and 'quoted'", "happy"),
                    ("old'style; escape", "happy"),
                ]
                assert conn.exec_driver_sql("SELECT shout('hi')").scalar() == "HI!;$$"
                assert conn.exec_driver_sql("SELECT add_one(41), add_one(NULL)").one() == (42, 0)
                conn.exec_driver_sql("CALL add_note('x')")
                assert conn.exec_driver_sql(
                    "SELECT body FROM notes WHERE id > 4 ORDER BY id"
                ).scalars().all() == ["x", "x; again"]
                valid = conn.exec_driver_sql(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_body_idx'::regclass"
                ).scalar()
                assert valid is True
                copied = conn.exec_driver_sql("SELECT id, label FROM copied ORDER BY id").all()
                assert [tuple(row) for row in copied] == [(1, "semi; colon and 'quote"), (2, None)]


def test_sql_files_run_as_the_mysql_client_runs_them(
    tmp_path: Path, run_prefix: str, mariadb_image: str
) -> None:
    (tmp_path / "schema.sql").write_text(MARIADB_AS_MYSQL.format(token=secrets.token_hex(6)))
    with server_for("mariadb", mariadb_image, run_prefix, tmp_path, pool_size=1) as server:
        for _ in range(2):  # each copy has its own routines, trigger and rows
            with server.database() as db, db.engine().begin() as conn:
                owners = conn.exec_driver_sql("SELECT owner, balance FROM accounts ORDER BY id")
                assert [tuple(row) for row in owners] == [
                    ("it's; ada", 10),
                    ('say "hi"', 20),
                    ("b\\", 30),
                    ("C:\\dir\\", 40),
                ]
                conn.exec_driver_sql("CALL deposit(1, 5)")
                assert (
                    conn.exec_driver_sql("SELECT balance FROM accounts WHERE id = 1").scalar() == 15
                )
                conn.exec_driver_sql("INSERT INTO accounts (owner) VALUES ('eve')")
                assert conn.exec_driver_sql("SELECT twice(21)").scalar() == 42
                notes = conn.exec_driver_sql("SELECT note FROM audit ORDER BY id").scalars().all()
                assert notes == [
                    "opened it's; ada;",
                    'opened say "hi";',
                    "opened b\\;",
                    "opened C:\\dir\\;",
                    "deposit; 5",
                    "opened eve;",
                ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sql_file_that_never_ends_names_file_and_line(
    engine: str, tmp_path: Path, run_prefix: str
) -> None:
    schema = tmp_path / "broken.sql"
    schema.write_text(
        f"-- {secrets.token_hex(6)}\nCREATE TABLE ok_so_far (x int);\n\n"
        "INSERT INTO ok_so_far VALUES (1);\nSELECT 'never closed;\nSELECT 2;\n"
    )
    image = image_for(engine)
    server = server_for(engine, image, run_prefix, schema, pool_size=0)
    with pytest.raises(MigrationError) as caught:
        server.start()
    message = str(caught.value)
    assert f"{schema}, line 5 (after statement 2): unterminated quoted string" in message


# -- Django ---------------------------------------------------------------------------------
DJANGO_BUILD = """
    import json, sys
    sys.path.insert(0, {root!r})
    import sqlalchemy as sa
    import freshdb
    from freshdb.errors import MigrationError
    from freshdb.migrators import DjangoMigrator

    migrator = DjangoMigrator("proj.settings")
    server = freshdb.DatabaseServer(
        {engine!r}, schema=migrator, image={image!r}, mode="sticky", prefix={prefix!r},
        pool_size=2, keep_templates=64,
    )
    try:
        server.start()
    except MigrationError as exc:
        print(json.dumps({{"error": str(exc)}}))
        raise SystemExit(0)
    with server:
        out = {{"fingerprint": migrator.fingerprint(), "reused": server.stats()["template_reused"],
               "copies": []}}
        for _ in range(2):
            with server.database() as db:
                engine = sa.create_engine(db.url, poolclass=sa.NullPool)
                inspector = sa.inspect(engine)
                tables = sorted(inspector.get_table_names())
                with engine.connect() as conn:
                    authors = inspector.get_columns("library_author")
                    book_fks = inspector.get_foreign_keys("shelf_book")
                    out["copies"].append({{
                        "tables": tables,
                        "author_columns": sorted(c["name"] for c in authors),
                        "book_fks": [fk["referred_table"] for fk in book_fks],
                        "seed": conn.execute(sa.text(
                            "SELECT a.name, b.title FROM shelf_book b "
                            "JOIN library_author a ON a.id = b.author_id")).all(),
                        "applied": conn.execute(sa.text(
                            "SELECT COUNT(*) FROM django_migrations")).scalar(),
                    }})
    print(json.dumps(out, default=list))
"""


def django_build(root: Path, engine: str, image: str, prefix: str) -> dict[str, Any]:
    """Start a server with the project's DjangoMigrator in a new process (one Django each)."""
    output = run_python(
        DJANGO_BUILD.format(root=str(root), engine=engine, image=image, prefix=prefix),
        env={"DJANGO_SETTINGS_MODULE": ""},
        timeout=240,
    )
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def expect_django_schema(copies: Sequence[dict[str, Any]], applied: int) -> None:
    for copy in copies:
        assert {"library_author", "shelf_book", "django_migrations", "auth_user"} <= set(
            copy["tables"]
        )
        assert copy["book_fks"] == ["library_author"]
        assert copy["seed"] == [["Ada Lovelace", "Notes"]]
        assert copy["applied"] == applied


@pytest.mark.parametrize("engine", ENGINES)
def test_django_project_template_is_built_once_and_follows_the_migrations(
    engine: str, tmp_path: Path, run_prefix: str
) -> None:
    image = image_for(engine)
    root = django_project.write_project(tmp_path, engine, token=secrets.token_hex(6))

    first = django_build(root, engine, image, run_prefix)
    assert first["reused"] is False
    expect_django_schema(first["copies"], applied=first["copies"][0]["applied"])
    applied = first["copies"][0]["applied"]
    assert applied > 3  # contenttypes and auth, plus the project's three
    assert django_project.migrations_run(root) == 1

    again = django_build(root, engine, image, run_prefix)
    assert again["reused"] is True
    assert again["fingerprint"] == first["fingerprint"]
    assert django_project.migrations_run(root) == 1  # migrate did not run again

    # Adding a migration: a new template, with the column, migrate runs once more.
    added = django_project.add_migration(root)
    grown = django_build(root, engine, image, run_prefix)
    assert grown["reused"] is False
    assert grown["fingerprint"] != first["fingerprint"]
    expect_django_schema(grown["copies"], applied=applied + 1)
    assert "born" in grown["copies"][0]["author_columns"]
    assert django_project.migrations_run(root) == 2

    # Editing a migration changes the fingerprint too.
    added.write_text(
        added.read_text().replace("IntegerField(null=True)", "SmallIntegerField(null=True)")
    )
    edited = django_build(root, engine, image, run_prefix)
    assert edited["reused"] is False
    assert edited["fingerprint"] not in (first["fingerprint"], grown["fingerprint"])
    assert django_project.migrations_run(root) == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_a_broken_django_migration_names_app_and_migration(
    engine: str, tmp_path: Path, run_prefix: str
) -> None:
    image = image_for(engine)
    root = django_project.write_project(tmp_path, engine, token=secrets.token_hex(6))
    django_project.add_migration(
        root,
        body='        migrations.RunSQL("UPDATE no_such_table SET x = 1"),\n',
    )
    result = django_build(root, engine, image, run_prefix)
    message = result["error"]
    assert "library.0002_author_born" in message
    assert "0002_author_born.py" in message
    assert "no_such_table" in message


def test_django_migrator_refuses_what_freshdb_cannot_serve(tmp_path: Path) -> None:
    root = django_project.write_project(tmp_path, "postgres", token="x")
    settings = root / "proj" / "settings.py"
    settings.write_text(
        settings.read_text().replace("django.db.backends.postgresql", "django.db.backends.sqlite3")
    )
    output = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(root)!r})
        import sqlalchemy as sa
        from freshdb.errors import ConfigurationError
        from freshdb.migrators import DjangoMigrator

        migrator = DjangoMigrator("proj.settings")
        engine = sa.create_engine("sqlite://")
        try:
            with engine.connect() as conn:
                migrator.migrate(conn)
        except ConfigurationError as exc:
            print(exc)
        """,
        env={"DJANGO_SETTINGS_MODULE": ""},
    )
    assert "freshdb serves Postgres and MySQL/MariaDB" in output
    assert "sqlite3" in output


def test_django_migrator_fingerprint_is_stable_and_names_the_migrations(tmp_path: Path) -> None:
    root = django_project.write_project(tmp_path, "postgres", token="stable")
    code = f"""
        import sys
        sys.path.insert(0, {str(root)!r})
        from freshdb.migrators import DjangoMigrator
        print(DjangoMigrator("proj.settings").fingerprint())
        """
    env = {"DJANGO_SETTINGS_MODULE": ""}
    first = run_python(code, env=env).strip()
    assert run_python(code, env=env).strip() == first
    seed = root / "shelf/migrations/0002_seed.py"
    seed.write_text(seed.read_text() + "\n# a comment changes the file\n")
    assert run_python(code, env=env).strip() != first
    _ = DjangoMigrator  # imported at top level: the module needs no Django to import
