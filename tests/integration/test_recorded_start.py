"""The warm start: a sticky server reached at its recorded address, never a wrong one."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import freshdb
from freshdb.backends import records

from ..conftest import run_python

pytestmark = pytest.mark.docker


def sticky(prefix: str, image: str, **options: Any) -> freshdb.DatabaseServer:
    return freshdb.DatabaseServer(
        "postgres", image=image, mode="sticky", prefix=prefix, pool_size=1, **options
    )


def key_of(server: freshdb.DatabaseServer) -> str:
    """The key of the address record a start of ``server``'s settings uses."""
    image = server.settings.image or server.dialect.default_image("postgres")
    spec = server.dialect.container_spec(server.settings, image, "")
    return records.record_key(server.settings, image, list(spec.command))


def identity_of(server: freshdb.DatabaseServer) -> str:
    """What the server the session uses says it is (asked on a copy of its own)."""
    with server.database() as db, db.engine().connect() as conn:
        return str(
            conn.exec_driver_sql("SELECT system_identifier FROM pg_control_system()").scalar()
        )


def started(server: freshdb.DatabaseServer) -> Any:
    assert server.running is not None
    return server.running


WARM_START = """
import json, sys
import freshdb
server = freshdb.DatabaseServer(
    "postgres", image={image!r}, mode="sticky", prefix={prefix!r}, pool_size=1
)
with server, server.database() as db, db.engine().connect() as conn:
    answer = conn.exec_driver_sql("SELECT 1").scalar()
    print(json.dumps({{"id": server.running.container_id, "from_record": server.running.from_record,
                      "docker_imported": "docker" in sys.modules, "answer": answer}}))
"""


def test_a_new_process_reaches_the_recorded_server_without_the_docker_sdk(
    fresh_prefix: str, postgres_image: str
) -> None:
    code = WARM_START.format(image=postgres_image, prefix=fresh_prefix)
    first = json.loads(run_python(code).strip().splitlines()[-1])
    second = json.loads(run_python(code).strip().splitlines()[-1])
    assert first["from_record"] is False and first["docker_imported"] is True
    assert second["from_record"] is True
    assert second["docker_imported"] is False
    assert second["id"] == first["id"]
    assert second["answer"] == 1


def test_other_settings_take_dockers_way_to_their_own_container(
    fresh_prefix: str, postgres_image: str
) -> None:
    with sticky(fresh_prefix, postgres_image) as first:
        first_id = started(first).container_id
    with sticky(fresh_prefix, postgres_image, tmpfs_size="1g") as other:
        assert started(other).from_record is False
        assert started(other).container_id != first_id
    # Each shape has its own record: both are found the short way now.
    with sticky(fresh_prefix, postgres_image) as again:
        assert started(again).from_record is True
        assert started(again).container_id == first_id
    with sticky(fresh_prefix, postgres_image, tmpfs_size="1g") as other_again:
        assert started(other_again).from_record is True
        assert started(other_again).container_id != first_id


def test_a_removed_container_is_made_again_by_dockers_way(
    docker_client: Any, fresh_prefix: str, postgres_image: str
) -> None:
    with sticky(fresh_prefix, postgres_image) as first:
        first_id = started(first).container_id
    docker_client.containers.get(first_id).remove(force=True, v=True)
    with sticky(fresh_prefix, postgres_image) as second:
        assert started(second).from_record is False
        assert started(second).container_id != first_id
        assert docker_client.containers.get(started(second).container_id).status == "running"
        with second.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_a_foreign_server_at_the_recorded_address_is_never_used(
    docker_client: Any, fresh_prefix: str, postgres_image: str
) -> None:
    with sticky(fresh_prefix, postgres_image) as ours:
        ours_id = started(ours).container_id
        ours_identity = identity_of(ours)
        key = key_of(ours)
    record = records.read_record(key)
    assert record is not None and record.identity == ours_identity
    # Another server (a Postgres of its own, accepting the credentials written into
    # the record: the worst case) now answers at the recorded address.
    with freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="throwaway", prefix=fresh_prefix + "f", pool_size=1
    ) as foreign:
        foreign_identity = identity_of(foreign)
        assert foreign_identity != ours_identity
        records.write_record(key, dataclasses.replace(record, address=foreign.address))
        with sticky(fresh_prefix, postgres_image) as session:
            assert started(session).from_record is False
            assert started(session).container_id == ours_id
            assert identity_of(session) == ours_identity
        # The same when only the identity is off (the engine's answers all hold):
        # the server's own word decides.
        records.write_record(key, dataclasses.replace(record, identity=foreign_identity))
        with sticky(fresh_prefix, postgres_image) as session:
            assert started(session).from_record is False
            assert started(session).container_id == ours_id
    # Docker's way recorded the right address again.
    again = records.read_record(key)
    assert again is not None
    assert again.address == record.address and again.identity == ours_identity
    with sticky(fresh_prefix, postgres_image) as session:
        assert started(session).from_record is True
        assert identity_of(session) == ours_identity
