"""Per-user records of sticky containers, shared by every freshdb process of the user.

- the file lock a start (or retirement) of a sticky container takes;
- the usage record whose age says when a start last asked for it;
- the *address record*: where a sticky server of given settings was found last
  time, its password and identity, so that the next process can reach it without
  loading the Docker SDK (see :mod:`freshdb.backends.recorded`).

Plain files under the user's state directory; nothing here talks to Docker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

from freshdb import naming
from freshdb.config import Settings
from freshdb.dialects.base import ServerAddress

log = logging.getLogger("freshdb")

#: Bumped when what an address record holds changes: older ones are ignored.
RECORD_FORMAT = 1

#: The environment that decides which Docker engine is used and how its ports are
#: reached: a record made under other values is another record.
_ENGINE_VARIABLES = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONFIG",
    "FRESHDB_HOST",
)


def state_directory() -> Path:
    """Per-user state (locks, records) shared by every freshdb process of this user."""
    path = Path(platformdirs.user_state_dir("freshdb", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock_path(name: str, docker_url: str) -> Path:
    """The file lock a start or retirement of the container ``name`` takes."""
    # The engine's URL salts the name: the same name on two engines is two containers.
    path = state_directory() / "locks" / naming.lock_name(name, docker_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def usage_record(name: str, docker_url: str) -> Path:
    """The file whose modification time says when a start last asked for ``name``."""
    return state_directory() / "used" / naming.usage_record_name(name, docker_url)


def record_start(name: str, docker_url: str) -> None:
    """Note that a start asked for ``name`` now (best effort)."""
    path = usage_record(name, docker_url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:  # only retirement reads it; a start must not fail on it
        log.debug("cannot record the start of %s in %s: %s", name, path, exc)


class StartLockTimeout(Exception):
    """Another process held a start lock for longer than the caller would wait."""


@contextlib.contextmanager
def start_lock_held(path: Path, timeout: float) -> Iterator[None]:
    """Hold the start lock at ``path`` (the one ``filelock.FileLock`` takes there).

    On Unix, straight with ``flock``, as filelock takes it (the file stays in place,
    so both share one inode): importing filelock costs a warm start more than all its
    work on the server (40 ms measured on a slow disk). Elsewhere, filelock itself.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        import filelock

        try:
            with filelock.FileLock(str(path), timeout=timeout):
                yield
        except filelock.Timeout as exc:
            raise StartLockTimeout(str(path)) from exc
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StartLockTimeout(str(path)) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@dataclasses.dataclass(frozen=True)
class AddressRecord:
    """Where a sticky server was found, and what proves a server there is that one."""

    #: The container's name (its shape hash included) and id.
    name: str
    container_id: str
    #: The Docker engine it runs on, as freshdb connected to it.
    docker_url: str
    image: str
    image_id: str
    address: ServerAddress
    #: What the server says it is (:meth:`~freshdb.dialects.base.Dialect.server_identity`).
    identity: str

    def to_json(self) -> dict[str, Any]:
        """The record as stored (the password included: the file is the user's only)."""
        fields = dataclasses.asdict(self)
        fields["format"] = RECORD_FORMAT
        return fields

    @classmethod
    def from_json(cls, data: Any) -> AddressRecord | None:
        """The record in ``data``, or ``None`` if it is not one of this format."""
        try:
            if data.get("format") != RECORD_FORMAT:
                return None
            address = ServerAddress(**data["address"])
            return cls(
                name=str(data["name"]),
                container_id=str(data["container_id"]),
                docker_url=str(data["docker_url"]),
                image=str(data["image"]),
                image_id=str(data["image_id"]),
                address=address,
                identity=str(data["identity"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def record_key(settings: Settings, image_name: str, command: list[str]) -> str:
    """What names the address record of a sticky start of these settings.

    Everything a sticky container's shape is made of that is known without asking
    Docker (engine, image name, server flags, tmpfs size, chosen port), the prefix,
    and what picks the Docker engine and how its ports are reached. The image id
    and the container itself are checked against Docker's own answer at each start.
    """
    environment = {name: os.environ.get(name, "") for name in _ENGINE_VARIABLES}
    return naming.settings_hash(
        {
            "format": RECORD_FORMAT,
            "prefix": settings.prefix,
            "engine": settings.engine,
            "image": image_name,
            "command": command,
            "tmpfs_size": settings.tmpfs_size,
            "port": settings.port,
            "environment": environment,
            "docker_context": _current_docker_context(),
            "in_container": Path("/.dockerenv").exists(),
        }
    )


def record_path(key: str) -> Path:
    """The file of the address record ``key``."""
    return state_directory() / "servers" / f"{key}.json"


def read_record(key: str) -> AddressRecord | None:
    """The address record ``key``, if there is a readable one."""
    try:
        data = json.loads(record_path(key).read_text())
    except (OSError, ValueError):
        return None
    return AddressRecord.from_json(data)


def write_record(key: str, record: AddressRecord) -> None:
    """Store the address record ``key`` (atomically, readable by this user only)."""
    path = record_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(record.to_json(), stream)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    except OSError as exc:  # the next start only takes the longer way
        log.debug("cannot record the address of %s in %s: %s", record.name, path, exc)


def forget_record(key: str) -> None:
    """Remove the address record ``key`` (gone already is fine)."""
    with contextlib.suppress(OSError):
        record_path(key).unlink()


def _current_docker_context() -> str:
    """The Docker CLI's current context, as its config file says (read without the
    Docker SDK: a start that needs no Docker call must not import it)."""
    directory = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        data = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get("currentContext") or "") if isinstance(data, dict) else ""


__all__ = [
    "AddressRecord",
    "StartLockTimeout",
    "forget_record",
    "lock_path",
    "read_record",
    "record_key",
    "record_path",
    "record_start",
    "start_lock_held",
    "state_directory",
    "usage_record",
    "write_record",
]
