"""Which snapshot ``freshdb shell --snapshot NAME`` opens, decided without a server."""

from __future__ import annotations

import pytest

from freshdb.cleanup.retention import TemplateRecord
from freshdb.cli.snapshot_shell import LISTED_AT_MOST, find_snapshot
from freshdb.errors import ConfigurationError


def record(name: str, *, key: str | None = None, kind: str = "snapshot") -> TemplateRecord:
    return TemplateRecord(
        name=name,
        fingerprint=name[-20:],
        created="",
        last_used="",
        projects={},
        migrator=None,
        in_use=False,
        kind=kind,
        parent="fdb_t_base" if kind == "snapshot" else None,
        key=key,
    )


RECORDS = [
    record("fdb_t_aaaa1111", kind="template"),
    record("fdb_t_aaaa2222", key="after-checkout"),
    record("fdb_t_bbbb3333"),
    record("fdb_t_bbbb4444", key="fdb_t_bbbb3333x"),
]


def test_a_full_name_wins_over_a_key_and_a_prefix() -> None:
    assert find_snapshot(RECORDS, "fdb_t_bbbb3333").name == "fdb_t_bbbb3333"


def test_a_key_names_its_snapshot() -> None:
    assert find_snapshot(RECORDS, "after-checkout").name == "fdb_t_aaaa2222"


def test_a_unique_prefix_names_its_snapshot_and_templates_are_not_snapshots() -> None:
    # fdb_t_aaaa matches a template and one snapshot: only the snapshot counts.
    assert find_snapshot(RECORDS, "fdb_t_aaaa").name == "fdb_t_aaaa2222"


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(ConfigurationError, match="names 2 snapshots") as caught:
        find_snapshot(RECORDS, "fdb_t_bbbb")
    assert "fdb_t_bbbb3333" in str(caught.value) and "give more of the name" in str(caught.value)


def test_no_match_lists_the_snapshots_there_are() -> None:
    with pytest.raises(ConfigurationError, match="no snapshot named 'nope'") as caught:
        find_snapshot(RECORDS, "nope")
    assert "fdb_t_aaaa2222 (key 'after-checkout')" in str(caught.value)
    with pytest.raises(ConfigurationError, match="snapshots here: none"):
        find_snapshot(RECORDS[:1], "fdb_t_aaaa")  # a template is not a snapshot


def test_a_base_template_opens_by_its_full_name_only() -> None:
    assert find_snapshot(RECORDS, "fdb_t_aaaa1111").name == "fdb_t_aaaa1111"


def test_a_long_list_of_snapshots_is_cut_short() -> None:
    many = [record(f"fdb_t_cccc{n:04d}", key=f"k{n}") for n in range(LISTED_AT_MOST + 5)]
    with pytest.raises(ConfigurationError) as caught:
        find_snapshot(many, "nope")
    message = str(caught.value)
    assert f"fdb_t_cccc{LISTED_AT_MOST - 1:04d}" in message
    assert f"fdb_t_cccc{LISTED_AT_MOST:04d}" not in message
    assert "and 5 more" in message and "`freshdb status` lists them" in message
