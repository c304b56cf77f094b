"""Database settings read back from pg_db_role_setting are given back as they were set."""

from __future__ import annotations

import pytest
from psycopg import sql

from freshdb.dialects.postgres.copier import setting_value, split_name_list


@pytest.mark.parametrize(
    ("stored", "names"),
    [
        ("app, public", ["app", "public"]),
        ('"$user", public', ["$user", "public"]),
        ('app, "Odd ""Schema""", public', ["app", 'Odd "Schema"', "public"]),
        ('"a, b", c', ["a, b", "c"]),
        ('""', [""]),
        ("single", ["single"]),
    ],
)
def test_stored_name_lists_split_and_unquote(stored: str, names: list[str]) -> None:
    assert split_name_list(stored) == names


def test_list_settings_become_one_literal_per_element_others_one_literal() -> None:
    assert setting_value("search_path", 'app, "Odd"') == sql.Composed(
        [sql.Literal("app"), sql.SQL(", "), sql.Literal("Odd")]
    )
    assert setting_value("Search_Path", "") == sql.Composed([sql.Literal("")])
    # DateStyle takes a list too, but the server keeps it unquoted: one literal works.
    assert setting_value("DateStyle", "iso, dmy") == sql.Literal("iso, dmy")


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        (
            "connection failed: FATAL:  sorry, too many clients already",
            "ServerFullError",
            "FRESHDB_MAX_CONNECTIONS",
        ),
        ("could not extend file: No space left on device", "ServerFullError", "freshdb prune"),
        ("checkpoint request failed", "ServerFullError", "FRESHDB_TMPFS_SIZE"),
        (
            'connection failed: FATAL:  password authentication failed for user "x"',
            "ConfigurationError",
            "FRESHDB_URL",
        ),
        ("connection refused", "ServerUnavailableError", "`freshdb status`"),
    ],
)
def test_postgres_errors_say_what_to_do(text: str, kind: str, words: str) -> None:
    import psycopg

    from freshdb.dialects.postgres import PostgresDialect

    translated = PostgresDialect().translate_error(psycopg.OperationalError(text))
    assert type(translated).__name__ == kind
    assert words in str(translated)
    assert text.splitlines()[0] in str(translated)  # the server's own words are kept
