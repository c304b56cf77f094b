"""The warm start's pure parts: when a recorded address holds, and its start lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import filelock
import pytest

from freshdb.backends import records
from freshdb.backends.recorded import record_mismatch
from freshdb.config import Settings
from freshdb.dialects.base import ServerAddress

RECORD = records.AddressRecord(
    name="p-postgres-abc",
    container_id="c" * 64,
    docker_url="unix:///var/run/docker.sock",
    image="postgres:17",
    image_id="sha256:1",
    address=ServerAddress("127.0.0.1", 40000, "postgres", "secret", "postgres"),
    identity="7123",
)


def image(**changes: Any) -> dict[str, Any]:
    return {"Id": "sha256:1", **changes}


def container(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "Name": "/p-postgres-abc",
        "Image": "sha256:1",
        "Config": {"Labels": {"io.freshdb.managed": "true", "io.freshdb.prefix": "p"}},
        "State": {"Status": "running"},
        "NetworkSettings": {"Ports": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40000"}]}},
    }
    answer.update(changes)
    return answer


def mismatch(image_answer: Any, container_answer: Any) -> str | None:
    return record_mismatch(RECORD, image_answer, container_answer, prefix="p", server_port=5432)


def test_a_record_holds_while_the_engine_says_the_same() -> None:
    assert mismatch(image(), container()) is None


@pytest.mark.parametrize(
    ("image_answer", "container_answer", "reason"),
    [
        (None, container(), "image postgres:17 is gone"),
        (image(Id="sha256:2"), container(), "is another image now"),
        (image(), None, "is gone"),
        (image(), container(Name="/other"), "is not named"),
        (image(), container(Config={"Labels": {}}), "is not freshdb's"),
        (image(), container(Image="sha256:0"), "runs another image"),
        (image(), container(State={"Status": "paused"}), "is not running"),
        (image(), container(NetworkSettings={"Ports": {}}), "no longer publishes port 40000"),
    ],
)
def test_any_difference_takes_dockers_way(
    image_answer: Any, container_answer: Any, reason: str
) -> None:
    found = mismatch(image_answer, container_answer)
    assert found is not None and reason in found


def test_the_record_key_changes_with_every_setting_that_shapes_the_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = Settings()
    key = records.record_key(base, "postgres:17", ["-c", "a"])
    assert records.record_key(Settings(), "postgres:17", ["-c", "a"]) == key
    assert records.record_key(base.replace(pool_size=7), "postgres:17", ["-c", "a"]) == key
    others = [
        records.record_key(base.replace(tmpfs_size="1g"), "postgres:17", ["-c", "a"]),
        records.record_key(base.replace(port=5555), "postgres:17", ["-c", "a"]),
        records.record_key(base.replace(prefix="other"), "postgres:17", ["-c", "a"]),
        records.record_key(base, "postgres:18", ["-c", "a"]),
        records.record_key(base, "postgres:17", ["-c", "b"]),
    ]
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    others.append(records.record_key(base, "postgres:17", ["-c", "a"]))
    assert len({key, *others}) == len(others) + 1


def test_records_round_trip_and_a_foreign_file_is_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "state_directory", lambda: tmp_path)
    records.write_record("k", RECORD)
    assert records.read_record("k") == RECORD
    records.record_path("k").write_text('{"format": 0}')
    assert records.read_record("k") is None
    records.forget_record("k")
    assert records.read_record("k") is None


def test_the_start_lock_excludes_filelocks_holder_and_the_other_way_round(tmp_path: Path) -> None:
    path = tmp_path / "start.lock"
    with (
        filelock.FileLock(str(path), timeout=1),
        pytest.raises(records.StartLockTimeout),
        records.start_lock_held(path, timeout=0.1),
    ):
        pass
    with records.start_lock_held(path, timeout=1), pytest.raises(filelock.Timeout):
        filelock.FileLock(str(path)).acquire(timeout=0.1)
    with records.start_lock_held(path, timeout=1):
        pass  # released both times
