"""A cache entry's manifest: what the entry holds, checked before any restore.

An entry is ``DIR/<fingerprint>/`` with a dump and :data:`MANIFEST_NAME`. Nothing is
restored that is not known good: the manifest must name the same fingerprint, engine
family and major server version (:func:`refusal`), and the dump must have the recorded
size and sha256 (:func:`file_sha256`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from freshdb._version import __version__
from freshdb.errors import FreshDBError
from freshdb.template import TemplateFingerprint

#: The manifest's file name in an entry's directory.
MANIFEST_NAME = "manifest.json"
#: The layout of entries this freshdb writes and reads; others are ignored.
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class CacheEntryError(FreshDBError):
    """A cache entry that must not be restored (corrupt, or made for another server)."""


@dataclasses.dataclass(frozen=True)
class CacheManifest:
    """What an entry holds, and what it was made from: checked before any restore."""

    #: The template fingerprint's digest (the entry's directory name).
    fingerprint: str
    #: ``"postgres"`` or ``"mysql"``: the engine family whose tools made the dump.
    family: str
    #: The server version the fingerprint names: ``"postgres 17"``, ``"mariadb 10.11"``.
    server_version: str
    #: The exact release that made it (for people reading the manifest).
    server_release: str
    #: The dump's file name in the entry's directory.
    dump: str
    sha256: str
    size: int
    created: str
    migrator: str
    #: Postgres: statements re-applying database-level settings and grants, with a
    #: ``{name}`` placeholder for the database (a dump of one database has none).
    database_statements: tuple[str, ...] = ()
    #: MySQL: the database's default character set and collation.
    character_set: str | None = None
    collation: str | None = None
    freshdb_version: str = __version__
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest file's text."""
        document = dataclasses.asdict(self)
        document["database_statements"] = list(self.database_statements)
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CacheManifest:
        """Read a manifest; :class:`CacheEntryError` if it is not one this freshdb reads."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise CacheEntryError(f"its manifest is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise CacheEntryError("its manifest is not a JSON object")
        if document.get("format") != FORMAT_VERSION:
            raise CacheEntryError(
                f"its manifest has format {document.get('format')!r}, this freshdb reads "
                f"{FORMAT_VERSION}"
            )
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, value in document.items():
            if name not in fields:
                continue  # a newer freshdb's extra facts: not needed to restore
            values[name] = value
        try:
            statements = values.get("database_statements", [])
            if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
                raise TypeError("database_statements must be a list of strings")
            values["database_statements"] = tuple(statements)
            manifest = cls(**values)
        except TypeError as exc:
            raise CacheEntryError(f"its manifest is incomplete ({exc})") from None
        for name in ("fingerprint", "family", "server_version", "dump", "sha256"):
            if not isinstance(getattr(manifest, name), str):
                raise CacheEntryError(f"its manifest's {name} is not a string")
        if not isinstance(manifest.size, int) or manifest.size < 0:
            raise CacheEntryError("its manifest's size is not a byte count")
        if Path(manifest.dump).name != manifest.dump or manifest.dump in ("", ".", ".."):
            raise CacheEntryError(f"its manifest names the dump {manifest.dump!r}, not a file")
        return manifest


def refusal(manifest: CacheManifest, wanted: TemplateFingerprint) -> str | None:
    """Why an entry's manifest does not fit the template wanted, or None if it does."""
    if manifest.fingerprint != wanted.digest:
        return f"it holds template {manifest.fingerprint[:20]}, not {wanted.digest[:20]}"
    if manifest.family != wanted.family:
        return f"it was made by {manifest.family}, this server is {wanted.family}"
    if manifest.server_version != wanted.server_version:
        return f"it was made by {manifest.server_version}, this server is {wanted.server_version}"
    return None


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's contents."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "CacheEntryError",
    "CacheManifest",
    "file_sha256",
    "refusal",
]
