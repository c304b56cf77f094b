"""Names of containers, databases and locks: the protocol between processes.

Every process that shares a server (pytest-xdist workers, concurrent sessions, the
CLI, another release of freshdb) finds the others' work only through these names,
labels and lock keys, so they are made and parsed here and nowhere else.

The rule: every name another process must agree on lives in this module, for every
engine — container names and labels, database names, each engine's lock names or
keys (Postgres advisory-lock keys, MySQL/MariaDB named locks), and the MySQL
template's completion-marker tables. A dialect (:mod:`freshdb.dialects`) takes them
from here and owns only the SQL that uses them.

Database names (all lowercase, ``[a-z0-9_]``):

- template:        ``{prefix}_t_{fingerprint20}``  complete and sealed
- template build:  ``{prefix}_b_{fingerprint20}_{owner}``  in progress, never cloned
- copy:            ``{prefix}_c_{fingerprint12}_{owner}_{seq}``
- kept copy:       ``{prefix}_k_{fingerprint12}_{owner}_{seq}``  kept after a failure

``owner`` is a random 8-hex-digit id per server session; the session holds a lock
named after it for as long as it lives, so a copy whose owner's lock is free
belongs to a dead process and may be reaped.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import secrets
from typing import Literal

LABEL_PREFIX = "io.freshdb"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_ENGINE = f"{LABEL_PREFIX}.engine"
LABEL_SETTINGS_HASH = f"{LABEL_PREFIX}.settings-hash"
#: The image name a container was made from (``docker ps`` shows an id once it moves).
LABEL_IMAGE = f"{LABEL_PREFIX}.image"
LABEL_MODE = f"{LABEL_PREFIX}.mode"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
LABEL_PREFIX_NAME = f"{LABEL_PREFIX}.prefix"
LABEL_OWNER_HOST = f"{LABEL_PREFIX}.owner-host"
LABEL_OWNER_PID = f"{LABEL_PREFIX}.owner-pid"
LABEL_CREATED = f"{LABEL_PREFIX}.created"

TEMPLATE_FINGERPRINT_LENGTH = 20
COPY_FINGERPRINT_LENGTH = 12
OWNER_LENGTH = 8

DatabaseKind = Literal["template", "build", "copy", "kept"]
_KIND_LETTER: dict[DatabaseKind, str] = {"template": "t", "build": "b", "copy": "c", "kept": "k"}
_LETTER_KIND: dict[str, DatabaseKind] = {v: k for k, v in _KIND_LETTER.items()}


def new_owner_id() -> str:
    """A random owner id: 8 hex digits, below 2**31 so it fits a signed int4 lock key."""
    return f"{secrets.randbelow(2**31):08x}"


def settings_hash(shape: dict[str, object]) -> str:
    """A short stable hash of the settings that shape a server container."""
    canonical = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def sticky_container_name(prefix: str, engine: str, shape_hash: str) -> str:
    """The deterministic name of a sticky server: same shape, same container.

    ``shape_hash`` covers everything that is fixed when a container is created
    (engine, image and image id, server flags, tmpfs size, published interface), so
    a project with another shape gets a container of its own and never replaces one
    that others' sessions are using.
    """
    return f"{prefix}-{engine}-{shape_hash}"


def sticky_shape_hash(name: str) -> str | None:
    """The shape hash at the end of a sticky container's name (``None`` if none)."""
    match = re.match(r"^[a-z][a-z0-9]*-[a-z]+-(?P<hash>[0-9a-f]{10})$", name)
    return match["hash"] if match else None


def throwaway_container_name(prefix: str, engine: str) -> str:
    """A unique name for a throwaway server."""
    return f"{prefix}-{engine}-tmp-{secrets.token_hex(4)}"


def lock_name(name: str, salt: str) -> str:
    """A file name for a cross-process lock about ``name`` (salted, so ids never clash)."""
    return hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()[:16] + ".lock"


def usage_record_name(name: str, salt: str) -> str:
    """A file name whose modification time records when ``name`` was last started."""
    return hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()[:16] + ".used"


def template_name(prefix: str, fingerprint: str) -> str:
    """The name of the complete, sealed template for a fingerprint."""
    return f"{prefix}_t_{fingerprint[:TEMPLATE_FINGERPRINT_LENGTH]}"


def build_name(prefix: str, fingerprint: str, owner: str) -> str:
    """The name a template is built under before it is renamed into place."""
    return f"{prefix}_b_{fingerprint[:TEMPLATE_FINGERPRINT_LENGTH]}_{owner}"


def copy_name(prefix: str, fingerprint: str, owner: str, seq: int) -> str:
    """The name of one copy of a template made by one owner."""
    return f"{prefix}_c_{fingerprint[:COPY_FINGERPRINT_LENGTH]}_{owner}_{seq}"


def kept_name(prefix: str, fingerprint: str, owner: str, seq: int) -> str:
    """The name a copy is renamed to when it is kept for inspection after a failure."""
    return f"{prefix}_k_{fingerprint[:COPY_FINGERPRINT_LENGTH]}_{owner}_{seq}"


@dataclasses.dataclass(frozen=True)
class ParsedName:
    """What a database name made by freshdb says about the database."""

    name: str
    kind: DatabaseKind
    fingerprint: str
    owner: str | None = None
    seq: int | None = None


@functools.lru_cache(maxsize=32)
def _name_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(prefix)}_(?P<kind>[tbck])_(?P<fp>[0-9a-f]+)"
        rf"(?:_(?P<owner>[0-9a-f]{{{OWNER_LENGTH}}}))?(?:_(?P<seq>[0-9]+))?$"
    )


def parse_database_name(prefix: str, name: str) -> ParsedName | None:
    """Parse a database name made by :mod:`freshdb.naming`; ``None`` if it is not ours."""
    match = _name_pattern(prefix).match(name)
    if not match:
        return None
    kind = _LETTER_KIND[match["kind"]]
    owner, seq = match["owner"], match["seq"]
    expected_length = (
        TEMPLATE_FINGERPRINT_LENGTH if kind in ("template", "build") else COPY_FINGERPRINT_LENGTH
    )
    shape_ok = {
        "template": owner is None and seq is None,
        "build": owner is not None and seq is None,
        "copy": owner is not None and seq is not None,
        "kept": owner is not None and seq is not None,
    }[kind]
    if not shape_ok or len(match["fp"]) != expected_length:
        return None
    return ParsedName(
        name=name,
        kind=kind,
        fingerprint=match["fp"],
        owner=owner,
        seq=int(seq) if seq is not None else None,
    )


def database_like_pattern(prefix: str) -> str:
    """A SQL LIKE pattern matching every database name freshdb makes with ``prefix``."""
    return prefix + r"\_%"


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    """Return ``name`` if it is a safe lowercase SQL identifier, else raise ``ValueError``.

    Every database name freshdb builds SQL with passes through here first, so no
    statement is ever built from an unchecked name.
    """
    if not _IDENTIFIER.match(name):
        raise ValueError(f"refusing unsafe database name {name!r}")
    return name


# -- Postgres: advisory-lock keys, and what freshdb's connections call themselves -------
#: The application_name of freshdb's admin connections (pg_stat_activity, lock holders).
APPLICATION_NAME = "freshdb"

# Two-key advisory locks: the first key is a namespace, the second an owner's or a
# template's key. Building (or removing) a template is exclusive under BUILD; a
# session that clones a template holds a shared lock under TEMPLATE for its whole
# life (taken while holding BUILD), so a remover holding BUILD sees every user in
# pg_locks.
LOCK_NAMESPACE_TEMPLATE = 0x66646274  # "fdbt"
LOCK_NAMESPACE_OWNER = 0x6664626F  # "fdbo"
LOCK_NAMESPACE_BUILD = 0x66646262  # "fdbb"


def owner_lock_key(owner: str) -> int:
    """The integer lock key of an owner id (its value, always a positive int4)."""
    return int(owner, 16)


def fingerprint_lock_key(fingerprint: str) -> int:
    """A positive int4 lock key derived from a template fingerprint."""
    return int(fingerprint[:8], 16) & 0x7FFFFFFF


# -- MySQL/MariaDB: named locks (GET_LOCK) and the template's completion marker ----------
# Named locks are server-wide strings of at most 64 characters. MySQL has no shared
# named locks, so a session marks a template "in use" by holding one of a fixed set of
# per-template user slots; a template none of whose slots is held is unused.
SERVER_LOCK_NAME_LIMIT = 64
TEMPLATE_USER_SLOTS = 128
#: The table whose presence marks a MySQL template complete (created last, atomically).
COMPLETION_MARKER_TABLE = "_freshdb_complete"
#: The marker's name while it is being filled, before the atomic rename.
COMPLETION_MARKER_PENDING_TABLE = "_freshdb_completing"


def _server_lock(name: str) -> str:
    if len(name) > SERVER_LOCK_NAME_LIMIT:
        raise ValueError(f"lock name {name!r} is longer than {SERVER_LOCK_NAME_LIMIT} characters")
    return name


def owner_lease_lock(owner: str) -> str:
    """The named lock an owner session holds for as long as it lives."""
    return _server_lock(f"freshdb:owner:{owner}")


def template_build_lock(fingerprint: str) -> str:
    """The exclusive named lock for building (or removing) a template."""
    return _server_lock(f"freshdb:template:{fingerprint[:TEMPLATE_FINGERPRINT_LENGTH]}")


def template_user_lock(fingerprint: str, slot: int) -> str:
    """One of the named locks a session holds while it clones a template."""
    if not 0 <= slot < TEMPLATE_USER_SLOTS:
        raise ValueError(f"template user slot {slot} is out of range")
    return _server_lock(f"freshdb:user:{fingerprint[:TEMPLATE_FINGERPRINT_LENGTH]}:{slot}")
