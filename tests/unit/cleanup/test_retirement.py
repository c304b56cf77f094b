"""Pure logic of sharing sticky servers: who counts as a user, what looks superseded."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from freshdb import naming
from freshdb.cleanup.retirement import may_be_superseded
from freshdb.dialects.base import ServerUse


@pytest.mark.parametrize(
    ("use", "idle", "text"),
    [
        (ServerUse(sessions=0, connections=0), True, "0 freshdb sessions, 0 connections"),
        (ServerUse(sessions=1, connections=3), False, "1 freshdb session, 3 connections"),
        # A lease lives on a connection, but a user's psql counts too.
        (ServerUse(sessions=0, connections=1), False, "0 freshdb sessions, 1 connection"),
        # MySQL cannot list named locks: only connections tell.
        (ServerUse(sessions=None, connections=0), True, "0 connections"),
        (ServerUse(sessions=None, connections=2), False, "2 connections"),
    ],
)
def test_a_server_is_idle_only_without_sessions_and_other_connections(
    use: ServerUse, idle: bool, text: str
) -> None:
    assert use.idle is idle
    assert use.describe() == text


@dataclasses.dataclass
class Listed:
    """A container as Docker's cheap listing describes it (attributes only)."""

    attrs: dict[str, Any]


def listed(name: str, shape_hash: str, image: str | None, image_id: str) -> Listed:
    labels = {naming.LABEL_SETTINGS_HASH: shape_hash}
    if image is not None:
        labels[naming.LABEL_IMAGE] = image
    return Listed({"Names": [f"/{name}"], "Labels": labels, "ImageID": image_id})


def test_what_a_start_may_find_superseded() -> None:
    current = "sha256:new"
    same = listed("p-postgres-0123456789", "0123456789", "postgres:17", current)
    assert not may_be_superseded(same, "postgres:17", current)  # another shape, same image
    older_image = listed("p-postgres-0123456789", "0123456789", "postgres:17", "sha256:old")
    assert may_be_superseded(older_image, "postgres:17", current)
    other_image = listed("p-postgres-0123456789", "0123456789", "postgres:15", "sha256:old")
    assert not may_be_superseded(other_image, "postgres:17", current)  # not this start's
    # Named before the shape was in the name (no image label then either).
    old_naming = listed("p-postgres-aaaaaaaaaa", "0123456789", None, current)
    assert may_be_superseded(old_naming, "postgres:17", current)
