"""Which servers freshdb supports, and telling an image's or a server's from its name.

The one place the version policy lives. It is applied twice: before a container
starts, from what the image's name and tag say (``postgres:11`` never gets
pulled), and once the server answers, from the version it reports (an image whose
name says nothing, or says something untrue). Both raise
:class:`~freshdb.errors.UnsupportedServerError` naming what is supported.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Literal

from freshdb.errors import UnsupportedServerError

Flavour = Literal["postgres", "mysql", "mariadb"]

#: Stands for "the newest release" where a tag names no version (``mysql:lts``, no tag).
NEWEST: tuple[int, ...] = (9999,)


@dataclasses.dataclass(frozen=True)
class ServerLine:
    """One server product: the oldest release freshdb runs on, and what is tested."""

    flavour: Flavour
    title: str
    minimum: tuple[int, ...]
    #: Releases the test suite runs against real servers.
    tested: tuple[str, ...]
    #: Why older releases are refused: what freshdb relies on.
    needs: str
    #: Releases covered by unit tests only (their server flags).
    unit_tested: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"MariaDB 10.6 or newer (tested: 10.11, 11.8)"``."""
        tested = ", ".join(self.tested)
        if self.unit_tested:
            tested += f"; {', '.join(self.unit_tested)} by unit tests"
        return f"{self.title} {_dotted(self.minimum)} or newer (tested: {tested})"


SERVERS: Mapping[Flavour, ServerLine] = {
    "postgres": ServerLine(
        "postgres", "Postgres", (13,), ("15", "17", "18"), "DROP DATABASE … WITH (FORCE)"
    ),
    "mariadb": ServerLine(
        "mariadb",
        "MariaDB",
        (10, 6),
        ("10.11", "11.8"),
        "atomic DDL and the oldest maintained release's SQL",
    ),
    "mysql": ServerLine(
        "mysql",
        "MySQL",
        (8, 0),
        ("9.7",),
        "atomic DDL, utf8mb4 defaults and caching_sha2_password logins",
        unit_tested=("8.4",),
    ),
}

#: The servers each engine name may run. MySQL's clients speak to MariaDB too, so
#: ``engine="mysql"`` accepts either; ``"mariadb"`` means MariaDB.
ENGINE_FLAVOURS: Mapping[str, tuple[Flavour, ...]] = {
    "postgres": ("postgres",),
    "mysql": ("mysql", "mariadb"),
    "mariadb": ("mariadb",),
}

# Words in an image's repository path that name its server. Checked in the last path
# segment first (``bitnami/mariadb``), then the ones before it (``mysql/mysql-server``).
_FLAVOUR_WORDS: tuple[tuple[Flavour, tuple[str, ...]], ...] = (
    ("mariadb", ("mariadb",)),
    ("mysql", ("mysql",)),
    ("postgres", ("postgres", "postgis", "pgvector")),
)
# A version at the start of a tag: "17", "8.0.36-debian", "v10.11", "pg17".
_TAG_VERSION = re.compile(r"^(?:v|pg)?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?![\d.])")
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")


def supported_servers() -> str:
    """Every supported server line, for error messages and documentation."""
    return "; ".join(line.describe() for line in SERVERS.values())


# -- what an image's name says -------------------------------------------------------
def _reference(image: str) -> tuple[list[str], str]:
    """An image reference's repository path segments (registry host left out), and tag."""
    without_digest = image.split("@", 1)[0]
    if _IMAGE_ID.match(without_digest):
        return [], ""  # an image id: it names nothing
    path, _, last = without_digest.rpartition("/")
    name, _, tag = last.partition(":")
    segments = [segment for segment in path.split("/") if segment] if path else []
    if segments and (
        "." in segments[0] or ":" in segments[0] or segments[0] == "localhost"
    ):  # a registry host, not a name
        segments = segments[1:]
    return [*segments, name], tag


def image_flavour(image: str) -> Flavour | None:
    """The server an image's name says it runs, or ``None`` if it does not say."""
    segments, _ = _reference(image)
    for segment in reversed(segments):
        lowered = segment.lower()
        found = {flavour for flavour, words in _FLAVOUR_WORDS if any(w in lowered for w in words)}
        if len(found) == 1:
            return found.pop()
        if found:
            return None  # names two servers: it is not for the name to decide
    return None


def image_version(image: str) -> tuple[int, ...]:
    """The server version an image's tag names, missing parts meaning "newest".

    ``mysql:8.0.36`` → ``(8, 0, 36)``; ``mysql:8.0`` tracks the newest 8.0 patch
    release → ``(8, 0, 9999)``; ``mariadb:lts``, no tag or an image id → :data:`NEWEST`.
    """
    _, tag = _reference(image)
    match = _TAG_VERSION.match(tag)
    if not match:
        return NEWEST
    return tuple(int(part) if part is not None else NEWEST[0] for part in match.groups())


# -- the checks ---------------------------------------------------------------------------
def check_image(engine: str, image: str) -> None:
    """Refuse, before anything is pulled or started, an image its name shows unfit.

    An image whose name names no server, or no version, passes: the server's own
    report is checked once it answers (:func:`check_server`).
    """
    flavour = image_flavour(image)
    if flavour is None:
        return
    _check(engine, flavour, image_version(image), f"image {image!r} runs", _hint(engine))


def check_server(
    engine: str, flavour: Flavour, version: tuple[int, ...], where: str, hint: str | None = None
) -> None:
    """Refuse a server that answered but is of another engine or too old a release.

    ``where`` names the server for the message (``"the server in image 'x'"``);
    ``hint`` says what to do instead (by default: choose another image).
    """
    _check(engine, flavour, version, f"{where} is", hint or _hint(engine))


def parse_reported_version(text: str) -> tuple[int, ...]:
    """``"9.7.4-1"`` → ``(9, 7, 4)``: the numeric head of a server's version string."""
    match = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?", text.strip())
    if not match:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)


def _check(
    engine: str, flavour: Flavour, version: tuple[int, ...], subject: str, hint: str
) -> None:
    line = SERVERS[flavour]
    allowed = ENGINE_FLAVOURS.get(engine, ())
    shown = f"{line.title} {_dotted(version)}" if version and version != NEWEST else line.title
    if flavour not in allowed:
        wanted = " or ".join(SERVERS[f].title for f in allowed) or "another server"
        raise UnsupportedServerError(
            f"engine {engine!r} runs {wanted}, but {subject} {shown} — use engine="
            f"{_engine_for(flavour)!r} for it, or {hint}. freshdb supports: "
            f"{supported_servers()}"
        )
    if version and version < line.minimum:
        raise UnsupportedServerError(
            f"{subject} {shown}, older than freshdb supports ({line.title} "
            f"{_dotted(line.minimum)} or newer: freshdb relies on {line.needs}) — {hint}. "
            f"freshdb supports: {supported_servers()}"
        )


def _engine_for(flavour: Flavour) -> str:
    return "postgres" if flavour == "postgres" else flavour


def _hint(engine: str) -> str:
    return f"choose a supported image with image= or FRESHDB_{engine.upper()}_IMAGE / FRESHDB_IMAGE"


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version if part != NEWEST[0])
