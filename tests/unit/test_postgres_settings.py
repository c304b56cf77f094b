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
