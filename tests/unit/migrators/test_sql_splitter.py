"""The .sql splitter cuts where psql and the mysql client cut, and nowhere else."""

from __future__ import annotations

import pytest

from freshdb.migrators import split_statements
from freshdb.migrators.sql_splitter import SqlFamily, SqlSplitError, StatementSplitter


def split(text: str, family: SqlFamily = "postgres") -> list[str]:
    return [s.sql for s in split_statements(text, family)]


def lines(text: str, family: SqlFamily = "postgres") -> list[int]:
    return [s.line for s in split_statements(text, family)]


# -- both families -----------------------------------------------------------------------
@pytest.mark.parametrize("family", ["postgres", "mysql"])
def test_quotes_and_comments_hide_semicolons(family: SqlFamily) -> None:
    text = """-- leading comment; not a statement
CREATE TABLE a (x text default 'a;b');
/* block; */ INSERT INTO a VALUES ('it''s; ok');
SELECT 3
"""
    assert split(text, family) == [
        "CREATE TABLE a (x text default 'a;b')",
        "INSERT INTO a VALUES ('it''s; ok')",
        "SELECT 3",
    ]
    # A statement's line is where its code starts, not its leading comment.
    assert lines(text, family) == [2, 3, 4]


@pytest.mark.parametrize("family", ["postgres", "mysql"])
def test_comments_and_empty_statements_alone_run_nothing(family: SqlFamily) -> None:
    assert split("-- only a comment\n;\n/* and ; this */ ;;\n", family) == []


def test_lines_count_newlines_inside_strings_and_bodies() -> None:
    text = (
        "SELECT 'a\nb';\n"
        "CREATE FUNCTION f() RETURNS int AS $$\nSELECT 1;\n$$ LANGUAGE sql;\n"
        "SELECT 2;"
    )
    assert lines(text) == [1, 3, 6]


# -- Postgres, as psql --------------------------------------------------------------------
def test_dollar_quoted_bodies_with_semicolons_and_quotes() -> None:
    body = """CREATE FUNCTION f() RETURNS trigger AS $body$
BEGIN
  RAISE NOTICE 'it''s; fine $$ here';  -- a "quote' in a comment;
  RETURN NEW;
END;
$body$ LANGUAGE plpgsql"""
    anonymous = "DO $$ BEGIN PERFORM 'x;'; END $$"
    assert split(f"{body};\n{anonymous};\nSELECT 1;") == [body, anonymous, "SELECT 1"]


def test_dollar_signs_that_are_not_quotes() -> None:
    prepared = "PREPARE q(int) AS SELECT $1"
    identifier = "SELECT 1 AS price$usd"
    assert split(f"{prepared};\n{identifier};") == [prepared, identifier]


def test_begin_atomic_bodies_keep_their_semicolons() -> None:
    function = """CREATE OR REPLACE FUNCTION add_one(x int) RETURNS int
LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x IS NULL THEN 0 ELSE x + 1 END;
END"""
    procedure = """CREATE PROCEDURE log_it(msg text)
LANGUAGE sql
BEGIN ATOMIC
  INSERT INTO log VALUES (msg);
  INSERT INTO log VALUES ('again;');
END"""
    assert split(f"{function};\n{procedure};\nBEGIN;\nSELECT 1;\nEND;") == [
        function,
        procedure,
        "BEGIN",
        "SELECT 1",
        "END",
    ]


def test_standard_conforming_strings_end_at_the_quote_after_a_backslash() -> None:
    # In Postgres '\' is a complete string: the backslash is not an escape.
    assert split("SELECT '\\';\nSELECT 'C:\\dir\\';\nSELECT 2;") == [
        "SELECT '\\'",
        "SELECT 'C:\\dir\\'",
        "SELECT 2",
    ]


def test_e_strings_take_backslash_escapes() -> None:
    escaped = "SELECT E'it\\'s; here', e'tab\\t;', E'\\\\'"
    assert split(f"{escaped};\nSELECT 2;") == [escaped, "SELECT 2"]
    # A word that merely ends in e is not an E'' prefix.
    assert split("SELECT 'a' AS some_e;\nSELECT 'b\\';") == ["SELECT 'a' AS some_e", "SELECT 'b\\'"]


def test_nested_comments_and_quoted_identifiers() -> None:
    text = '/* outer /* inner; */ still comment; */ SELECT 1 AS "we;ird""name";\nSELECT 2;'
    assert split(text) == ['SELECT 1 AS "we;ird""name"', "SELECT 2"]


def test_semicolons_inside_parentheses_do_not_split() -> None:
    rule = (
        "CREATE RULE r AS ON INSERT TO t DO ALSO "
        "(INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))"
    )
    assert split(f"{rule};\nSELECT 1;") == [rule, "SELECT 1"]


def test_pg_dump_restrict_lines_are_skipped_and_other_meta_commands_refused() -> None:
    dump = "\\restrict abc123\nSET search_path = public;\n\\unrestrict abc123\n"
    assert split(dump) == ["SET search_path = public"]
    assert split("\\set ON_ERROR_STOP on\nSELECT 1;") == ["SELECT 1"]
    with pytest.raises(SqlSplitError, match=r"meta-command '\\\\connect other'") as caught:
        split("SELECT 1;\n\\connect other\n")
    assert caught.value.line == 2


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("SELECT 1;\nSELECT $$ never closed;\n", "unterminated dollar-quoted string", 2),
        ("SELECT 'open;\n", "unterminated quoted string", 1),
        ("SELECT 1;\n\n/* open /* nested */ still open\n", r"unterminated /\* comment", 3),
        ("SELECT E'open\\';\n", "unterminated E'' string", 1),
    ],
)
def test_text_that_never_ends_is_an_error_with_its_line(text: str, message: str, line: int) -> None:
    with pytest.raises(SqlSplitError, match=message) as caught:
        split(text)
    assert caught.value.line == line


# -- MySQL and MariaDB, as the mysql client ------------------------------------------------
def test_delimiter_blocks_keep_routine_and_trigger_bodies_whole() -> None:
    procedure = "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END"
    trigger = "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN SET NEW.x = 1; END"
    text = f"""DELIMITER //
{procedure} //
{trigger}//
delimiter ;
DELIMITER $$
CREATE FUNCTION f() RETURNS INT DETERMINISTIC BEGIN RETURN 1; END$$
DELIMITER ;
SELECT 3;
"""
    assert split(text, "mysql") == [
        procedure,
        trigger,
        "CREATE FUNCTION f() RETURNS INT DETERMINISTIC BEGIN RETURN 1; END",
        "SELECT 3",
    ]
    assert lines(text, "mysql") == [2, 3, 6, 8]


def test_mysql_backslash_escapes_in_both_string_quotes() -> None:
    text = (
        "INSERT INTO a VALUES ('it\\'s; ok', \"say \\\"hi;\\\"\", '\\\\');\nSELECT `we;ird``name`;"
    )
    assert split(text, "mysql") == [
        "INSERT INTO a VALUES ('it\\'s; ok', \"say \\\"hi;\\\"\", '\\\\')",
        "SELECT `we;ird``name`",
    ]


def test_mysql_comments_hash_dash_dash_space_and_executable() -> None:
    text = """# a hash comment;
/*!40101 SET NAMES utf8mb4 */;
SELECT 5--1;
-- a real comment;
SELECT 2; /* no nesting /* here */ SELECT 3;
"""
    assert split(text, "mysql") == [
        "/*!40101 SET NAMES utf8mb4 */",
        "SELECT 5--1",
        "SELECT 2",
        "SELECT 3",
    ]


def test_mysql_ignores_postgres_only_syntax() -> None:
    # No dollar quotes and no parenthesis tracking in the mysql client.
    assert split("SELECT '$$';\nSELECT 1;", "mysql") == ["SELECT '$$'", "SELECT 1"]
    assert split("SELECT ($$;\nSELECT 1;", "mysql") == ["SELECT ($$", "SELECT 1"]


def test_delimiter_without_a_value_is_an_error() -> None:
    with pytest.raises(SqlSplitError, match="DELIMITER must be followed") as caught:
        split("SELECT 1;\nDELIMITER\nSELECT 2;", "mysql")
    assert caught.value.line == 2


# -- following the server's string syntax ------------------------------------------------
def test_string_syntax_follows_what_the_caller_reports_between_statements() -> None:
    # As after SET standard_conforming_strings = off: the next '' string takes escapes.
    text = "SELECT 'a\\';\nSELECT 'b\\';', 'c';\nSELECT 'd\\';"
    splitter = StatementSplitter(text, "postgres")
    statements = splitter.statements()
    assert next(statements).sql == "SELECT 'a\\'"
    splitter.backslash_escapes = True
    assert next(statements).sql == "SELECT 'b\\';', 'c'"
    splitter.backslash_escapes = False
    assert [s.sql for s in statements] == ["SELECT 'd\\'"]


def test_mysql_without_backslash_escapes_reads_backslash_as_a_character() -> None:
    # As with sql_mode NO_BACKSLASH_ESCAPES, in both string quotes.
    splitter = StatementSplitter("SELECT 'C:\\dir\\', \"x\\\";\nSELECT 2;", "mysql")
    splitter.backslash_escapes = False
    assert [s.sql for s in splitter.statements()] == ["SELECT 'C:\\dir\\', \"x\\\"", "SELECT 2"]


def test_copy_from_stdin_takes_the_lines_up_to_backslash_dot_as_data() -> None:
    text = (
        "CREATE TABLE t (a int, b text);\n"
        "COPY public.t (a, b) FROM stdin;\n"
        "1\tsemi; colon 'quote\n"
        "2\t\\N\n"
        "\\.\n"
        "SELECT 1;\n"
    )
    statements = list(split_statements(text))
    assert [(s.sql, s.line, s.copy_data) for s in statements] == [
        ("CREATE TABLE t (a int, b text)", 1, None),
        ("COPY public.t (a, b) FROM stdin", 2, "1\tsemi; colon 'quote\n2\t\\N\n"),
        ("SELECT 1", 6, None),
    ]
    # COPY to or from a file is an ordinary statement; MySQL has no COPY.
    assert next(split_statements("COPY t FROM '/tmp/x';\nSELECT 1;")).copy_data is None
    with pytest.raises(SqlSplitError, match=r"does not end with a line \\\.") as caught:
        split("SELECT 1;\nCOPY t FROM STDIN;\n1\n2\n")
    assert caught.value.line == 2


def test_a_statement_shown_in_an_error_is_one_line_of_at_most_300_characters() -> None:
    from freshdb.migrators.base import shortened_statement

    assert shortened_statement("SELECT\n  1,\t2;") == "SELECT 1, 2;"
    shown = shortened_statement("SELECT " + "x, " * 200)
    assert len(shown) == 300
    assert shown.endswith("...")
    assert shortened_statement("SELECT " + "x" * 293) == "SELECT " + "x" * 293  # exactly 300
