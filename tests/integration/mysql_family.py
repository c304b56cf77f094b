"""What the MySQL and MariaDB copy tests share: a schema using every kind of object,
and the checks that a copy is its template's twin and behaves like it.

A copy replays the template's DDL and copies its rows, so on each server the proof
is the same: ``SHOW CREATE`` of every object and ``CHECKSUM TABLE`` of every table
agree between template and copy, and the objects work in the copy on the copy's data.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

import freshdb
from freshdb import naming

# Everything a copy must carry: indexes, foreign keys, a generated column, an
# AUTO_INCREMENT start and a gap, a view on a view, a trigger, a procedure, a
# function, an event, and rows.
RICH_SCHEMA = """
CREATE TABLE authors (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) NOT NULL,
  UNIQUE KEY authors_email (email)
) ENGINE=InnoDB;

CREATE TABLE posts (
  id INT AUTO_INCREMENT PRIMARY KEY,
  author_id INT NOT NULL,
  title VARCHAR(200) NOT NULL,
  body TEXT,
  title_length INT AS (CHAR_LENGTH(title)) STORED,
  KEY posts_title (title),
  CONSTRAINT posts_author FOREIGN KEY (author_id) REFERENCES authors (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE comments (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  post_id INT NOT NULL,
  body VARCHAR(500) NOT NULL,
  CONSTRAINT comments_post FOREIGN KEY (post_id) REFERENCES posts (id)
) ENGINE=InnoDB AUTO_INCREMENT=1000;

CREATE TABLE audit_log (
  id INT AUTO_INCREMENT PRIMARY KEY,
  message VARCHAR(200) NOT NULL
) ENGINE=InnoDB;

CREATE TABLE empty_table (id INT PRIMARY KEY) ENGINE=InnoDB;

-- Text columns of their own character set and collation, and a table of its own.
CREATE TABLE labels (
  code CHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  title VARCHAR(50) COLLATE utf8mb4_bin NOT NULL,
  note TEXT
) ENGINE=InnoDB DEFAULT CHARSET=latin1;

-- A view on a view: created in dependency order in the copy.
CREATE VIEW post_titles AS
  SELECT p.id, p.title, a.name AS author FROM posts p JOIN authors a ON a.id = p.author_id;
CREATE VIEW long_titles AS SELECT id, title FROM post_titles WHERE CHAR_LENGTH(title) > 5;

-- Disabled: it never runs, yet every copy must have it.
CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00'
  ON COMPLETION PRESERVE DISABLE DO DELETE FROM audit_log WHERE id < 0;

DELIMITER //
CREATE TRIGGER posts_audit AFTER INSERT ON posts FOR EACH ROW
BEGIN
  INSERT INTO audit_log (message) VALUES (CONCAT('post ', NEW.id));
END//

CREATE PROCEDURE add_author(IN author_name VARCHAR(100))
BEGIN
  INSERT INTO authors (name, email)
    VALUES (author_name, CONCAT(LOWER(author_name), '@example.com'));
END//

CREATE FUNCTION post_count(author INT) RETURNS INT
READS SQL DATA
BEGIN
  RETURN (SELECT COUNT(*) FROM posts WHERE author_id = author);
END//
DELIMITER ;

INSERT INTO authors (name, email) VALUES ('Ada', 'ada@example.com'), ('Grace', 'grace@example.com');
INSERT INTO posts (author_id, title, body) VALUES
  (1, 'Hello world', 'first'), (2, 'Compilers', 'second'), (1, 'Hi', 'short');
INSERT INTO comments (post_id, body) VALUES (1, 'nice');
INSERT INTO labels (code, title, note) VALUES ('A-1', 'Zürich', 'ümlaut'), ('b-2', 'apple', NULL);
-- A gap: the next author id is 4, not 3, in the template and in every copy.
INSERT INTO authors (name, email) VALUES ('Temp', 'temp@example.com');
DELETE FROM authors WHERE name = 'Temp';
"""

BASE_TABLES = ["audit_log", "authors", "comments", "empty_table", "labels", "posts"]


def write_rich_schema(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """:data:`RICH_SCHEMA` as a ``.sql`` file."""
    path = tmp_path_factory.mktemp(name) / f"rich_{name}.sql"
    path.write_text(RICH_SCHEMA)
    return path


def admin(server: freshdb.DatabaseServer) -> sa.Engine:
    """An engine on the server's admin connection (no database chosen)."""
    return sa.create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def show_create(conn: sa.Connection, database: str, kind: str, name: str) -> str:
    """``SHOW CREATE`` read from inside ``database`` (names then print unqualified)."""
    conn.exec_driver_sql(f"USE `{database}`")
    row = conn.exec_driver_sql(f"SHOW CREATE {kind} `{name}`").one()
    column = {"TRIGGER": 2, "PROCEDURE": 2, "FUNCTION": 2, "EVENT": 3}.get(kind, 1)
    return str(row[column])


def objects(conn: sa.Connection, database: str) -> dict[str, list[str]]:
    """Names of every kind of object in a database."""

    def names(sql: str) -> list[str]:
        return sorted(str(r[0]) for r in conn.exec_driver_sql(sql, (database,)))

    return {
        "tables": names(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE = 'BASE TABLE' "
        ),
        "views": names("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"),
        "triggers": names(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
        ),
        "routines": names(
            "SELECT CONCAT(ROUTINE_TYPE, ' ', ROUTINE_NAME) FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = %s"
        ),
        "events": names("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"),
    }


def assert_copy_is_the_template_twin(server: freshdb.DatabaseServer) -> None:
    """Same objects, same ``SHOW CREATE`` of each, same rows (by checksum)."""
    template = server.template
    assert template is not None
    with server.database() as db, admin(server).connect() as conn:
        copy_objects = objects(conn, db.name)
        template_objects = objects(conn, template)
        # The completion marker is the template's own; nothing else differs.
        assert template_objects["tables"] == sorted([*BASE_TABLES, naming.COMPLETION_MARKER_TABLE])
        assert copy_objects == {**template_objects, "tables": BASE_TABLES}
        assert copy_objects["views"] == ["long_titles", "post_titles"]
        assert copy_objects["triggers"] == ["posts_audit"]
        assert copy_objects["routines"] == ["FUNCTION post_count", "PROCEDURE add_author"]
        assert copy_objects["events"] == ["purge_audit"]

        # The database's own defaults, which every table and column without its own
        # character set or collation inherits.
        defaults = (
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
        )
        assert (
            conn.exec_driver_sql(defaults, (db.name,)).one()
            == conn.exec_driver_sql(defaults, (template,)).one()
        )
        # Same DDL, indexes, foreign keys, character sets and AUTO_INCREMENT counters.
        for table in BASE_TABLES:
            assert show_create(conn, db.name, "TABLE", table) == show_create(
                conn, template, "TABLE", table
            ), table
        for kind, names in (
            ("VIEW", copy_objects["views"]),
            ("TRIGGER", copy_objects["triggers"]),
            ("PROCEDURE", ["add_author"]),
            ("FUNCTION", ["post_count"]),
            ("EVENT", copy_objects["events"]),
        ):
            for name in names:
                assert show_create(conn, db.name, kind, name) == show_create(
                    conn, template, kind, name
                ), name
        # The columns' own character sets and collations, one by one.
        columns = (
            "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME <> %s ORDER BY TABLE_NAME, COLUMN_NAME"
        )
        marker = naming.COMPLETION_MARKER_TABLE
        assert (
            conn.exec_driver_sql(columns, (db.name, marker)).all()
            == conn.exec_driver_sql(columns, (template, marker)).all()
        )
        # The copy's views read the copy's tables, never the template's.
        definitions = conn.exec_driver_sql(
            "SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s",
            (db.name,),
        ).all()
        assert definitions and all(template not in str(row[0]) for row in definitions)

        # Same data, row for row.
        for table in BASE_TABLES:
            checksums = conn.exec_driver_sql(
                f"CHECKSUM TABLE `{template}`.`{table}`, `{db.name}`.`{table}`"
            ).all()
            assert checksums[0][1] == checksums[1][1], table
        conn.exec_driver_sql("USE information_schema")


def assert_copy_behaves_like_the_template(server: freshdb.DatabaseServer) -> None:
    """The copy's objects work on the copy's data, and the template sees none of it."""
    template = server.template
    with server.database() as db, db.engine().connect() as conn:
        # AUTO_INCREMENT next values survive the copy (the gap left by a deleted row too).
        conn.exec_driver_sql("CALL add_author('Linus')")  # the procedure works
        assert conn.exec_driver_sql("SELECT id FROM authors WHERE name = 'Linus'").scalar() == 4
        conn.exec_driver_sql("INSERT INTO comments (post_id, body) VALUES (2, 'more')")
        assert conn.exec_driver_sql("SELECT MAX(id) FROM comments").scalar() == 1001
        # The trigger fires in the copy, into the copy's table.
        conn.exec_driver_sql("INSERT INTO posts (author_id, title) VALUES (4, 'Kernel notes')")
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").scalar() == 4
        # The views read the copy's rows: written here, seen here.
        assert (
            conn.exec_driver_sql(
                "SELECT author FROM post_titles WHERE title = 'Kernel notes'"
            ).scalar()
            == "Linus"
        )
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM long_titles").scalar() == 3
        assert conn.exec_driver_sql("SELECT post_count(4)").scalar() == 1
        # Generated columns are computed in the copy, too.
        assert conn.exec_driver_sql(
            "SELECT title_length FROM posts WHERE title = 'Kernel notes'"
        ).scalar() == len("Kernel notes")
        # Collations kept: a binary one tells case apart, ascii_bin sorts by byte.
        apple = "SELECT COUNT(*) FROM labels WHERE title = 'APPLE'"
        assert conn.exec_driver_sql(apple).scalar() == 0
        assert [r[0] for r in conn.exec_driver_sql("SELECT code FROM labels ORDER BY code")] == [
            "A-1",
            "b-2",
        ]
        assert conn.exec_driver_sql("SELECT title FROM labels WHERE code = 'A-1'").scalar() == (
            "Zürich"
        )
        conn.commit()
        # Foreign keys are enforced in the copy.
        with pytest.raises(IntegrityError):
            conn.exec_driver_sql("INSERT INTO comments (post_id, body) VALUES (999, 'orphan')")
        conn.rollback()
        conn.exec_driver_sql("DELETE FROM comments")
        conn.exec_driver_sql("DELETE FROM authors WHERE id = 1")  # ON DELETE CASCADE
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM posts WHERE author_id = 1").scalar() == 0
        conn.commit()
    with admin(server).connect() as conn:
        # ... and the template saw none of it.
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{template}`.posts").scalar() == 3
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{template}`.long_titles").scalar() == 2
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{template}`.audit_log").scalar() == 3


def assert_writes_stay_in_their_copy(server: freshdb.DatabaseServer) -> None:
    """A write in one copy is invisible in the next."""
    with server.database() as first, first.engine().connect() as conn:
        conn.exec_driver_sql("INSERT INTO authors (name, email) VALUES ('Only', 'only@here')")
        conn.commit()
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM authors").scalar() == 3
    with server.database() as second, second.engine().connect() as conn:
        assert second.name != first.name
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM authors").scalar() == 2


def assert_kept_copy_has_everything(server: freshdb.DatabaseServer) -> None:
    """A kept copy is renamed with every object and row, and all of them work."""
    # No RENAME DATABASE: tables move with RENAME TABLE, the rest is re-created.
    with server.database() as db, db.engine().connect() as conn:
        conn.exec_driver_sql("INSERT INTO posts (author_id, title) VALUES (2, 'Keep me please')")
        conn.commit()
        db.keep()
    kept = naming.parse_database_name(server.settings.prefix, db.name)
    assert kept is not None and kept.owner is not None and kept.seq is not None
    kept_name = naming.kept_name(server.settings.prefix, kept.fingerprint, kept.owner, kept.seq)
    with admin(server).connect() as conn:
        # The rename runs in the background, in several round trips (one per routine,
        # trigger and event, re-created after the tables moved); dropping the old name
        # is its last statement, so only then is everything in the kept copy.
        for _ in range(200):
            old_gone = not conn.exec_driver_sql(
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (db.name,)
            ).all()
            if old_gone and objects(conn, kept_name)["tables"]:
                break
            time.sleep(0.05)
        assert objects(conn, kept_name) == objects(conn, str(server.template)) | {
            "tables": BASE_TABLES
        }
        assert not conn.exec_driver_sql(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (db.name,)
        ).all()
    engine = sa.create_engine(db.url.set(database=kept_name), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql(
                    "SELECT author FROM post_titles WHERE title = 'Keep me please'"
                ).scalar()
                == "Grace"
            )
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").scalar() == 4
            conn.exec_driver_sql("INSERT INTO posts (author_id, title) VALUES (1, 'trigger?')")
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").scalar() == 5
            assert conn.exec_driver_sql("SELECT post_count(1)").scalar() == 3
            conn.rollback()
    finally:
        engine.dispose()
        conn = server.dialect.connect(server.address)
        try:
            server.dialect.drop_database(conn, kept_name)
        finally:
            conn.close()


# -- across processes -------------------------------------------------------------------
def spawn(code: str) -> subprocess.Popen[str]:
    """Start Python code in a new process (like ``run_python``, without waiting)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )


#: A session building a slow template: format with engine, image, prefix, key,
#: counter (a file each build appends to) and start_at (when to begin).
SESSION = """
import json, sys, time
from pathlib import Path
import freshdb
from freshdb.migrators import CallableMigrator

def build(connection):
    with open({counter!r}, "a") as handle:
        handle.write("built\\n")
    time.sleep(1.0)  # long enough for the other processes to arrive and wait
    connection.exec_driver_sql("CREATE TABLE things (id INT PRIMARY KEY)")
    connection.exec_driver_sql("INSERT INTO things VALUES (1), (2)")

time.sleep(max(0.0, {start_at!r} - time.time()))  # all start together
# Pruning as hard as it gets: each start drops every idle template it can, so the
# four starts prune at once, and while one of them builds in place.
server = freshdb.DatabaseServer(
    {engine!r}, image={image!r}, mode="sticky", prefix={prefix!r}, pool_size=1,
    schema=CallableMigrator(build, key={key!r}), keep_templates=1, template_retention="0",
)
with server:
    with server.database() as db, db.engine().connect() as conn:
        count = conn.exec_driver_sql("SELECT COUNT(*) FROM things").scalar()
    print(json.dumps({{"reused": server.stats()["template_reused"], "rows": count,
                      "template": server.template}}))
"""
