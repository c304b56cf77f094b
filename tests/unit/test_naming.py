"""Names are the protocol between processes: they must parse back exactly."""

from __future__ import annotations

import pytest

from freshdb import naming

FINGERPRINT = "0123456789abcdef" * 4


def test_names_round_trip() -> None:
    owner = naming.new_owner_id()
    cases = {
        naming.template_name("freshdb", FINGERPRINT): ("template", None, None),
        naming.build_name("freshdb", FINGERPRINT, owner): ("build", owner, None),
        naming.copy_name("freshdb", FINGERPRINT, owner, 12): ("copy", owner, 12),
        naming.kept_name("freshdb", FINGERPRINT, owner, 3): ("kept", owner, 3),
    }
    for name, (kind, expected_owner, seq) in cases.items():
        parsed = naming.parse_database_name("freshdb", name)
        assert parsed is not None, name
        assert (parsed.kind, parsed.owner, parsed.seq) == (kind, expected_owner, seq)
        assert FINGERPRINT.startswith(parsed.fingerprint)
        assert len(name) <= 63
        assert naming.check_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "freshdb",
        "postgres",
        "freshdbx_t_0123456789abcdef0123",
        "other_t_0123456789abcdef0123",
        "freshdb_t_0123",  # wrong fingerprint length
        "freshdb_c_0123456789ab_0000000a",  # a copy needs a sequence number
        "freshdb_t_0123456789abcdef0123_0000000a",  # a template has no owner
        "freshdb_x_0123456789abcdef0123",
    ],
)
def test_foreign_names_are_not_ours(name: str) -> None:
    assert naming.parse_database_name("freshdb", name) is None


def test_owner_ids_fit_a_signed_int4_lock_key() -> None:
    for _ in range(200):
        owner = naming.new_owner_id()
        assert len(owner) == naming.OWNER_LENGTH
        assert 0 <= naming.owner_lock_key(owner) < 2**31
    assert 0 <= naming.fingerprint_lock_key("ffffffff" + "0" * 56) < 2**31


def test_settings_hash_is_stable_and_order_free() -> None:
    assert naming.settings_hash({"a": 1, "b": [1, 2]}) == naming.settings_hash(
        {"b": [1, 2], "a": 1}
    )
    assert naming.settings_hash({"a": 1}) != naming.settings_hash({"a": 2})


def test_container_names() -> None:
    assert naming.sticky_container_name("freshdb", "postgres", "abc") == "freshdb-postgres-abc"
    one = naming.throwaway_container_name("freshdb", "postgres")
    two = naming.throwaway_container_name("freshdb", "postgres")
    assert one != two and one.startswith("freshdb-postgres-tmp-")


def test_a_sticky_name_carries_its_shape_hash() -> None:
    shape_hash = naming.settings_hash({"engine": "postgres", "tmpfs_size": "1g"})
    name = naming.sticky_container_name("freshdb", "postgres", shape_hash)
    assert naming.sticky_shape_hash(name) == shape_hash
    # Throwaway names, and names of other shapes, carry none.
    assert naming.sticky_shape_hash(naming.throwaway_container_name("freshdb", "postgres")) is None
    assert naming.sticky_shape_hash("freshdb-postgres-foreign") is None
    assert naming.sticky_shape_hash("freshdb-postgres-" + shape_hash + "0") is None


def test_usage_records_and_locks_have_distinct_salted_names() -> None:
    name = "freshdb-postgres-0123456789"
    record = naming.usage_record_name(name, "unix:///var/run/docker.sock")
    assert record.endswith(".used")
    assert record != naming.usage_record_name(name, "tcp://elsewhere:2375")
    assert record[:-5] == naming.lock_name(name, "unix:///var/run/docker.sock")[:-5]


@pytest.mark.parametrize("name", ["Robert'); DROP TABLE", "a b", "", "1abc", "a" * 64, 'x"y'])
def test_unsafe_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        naming.check_identifier(name)


def test_lock_names_fit_the_64_character_limit() -> None:
    fingerprint = "f" * 64
    names = [
        naming.owner_lease_lock(naming.new_owner_id()),
        naming.template_build_lock(fingerprint),
        naming.template_user_lock(fingerprint, naming.TEMPLATE_USER_SLOTS - 1),
    ]
    assert all(len(name) <= naming.SERVER_LOCK_NAME_LIMIT for name in names)
    # The full digest (building) and the name's 20 digits (pruning) lock the same thing.
    assert naming.template_build_lock(fingerprint) == naming.template_build_lock(fingerprint[:20])
    with pytest.raises(ValueError):
        naming.template_user_lock(fingerprint, naming.TEMPLATE_USER_SLOTS)
