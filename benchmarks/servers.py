"""One line per server of the matrix: one copy of the template, and an acquire.

freshdb is tested on Postgres 15, 17 and 18, MariaDB 10.11 and 11.8, and MySQL 9;
a copy is a different operation on each family (``CREATE DATABASE … TEMPLATE`` on
Postgres, replayed DDL + ``INSERT … SELECT`` on MySQL/MariaDB) and its cost moves
between versions. Each server of the matrix runs as a throwaway container of its own
(prefix ``benchmatrix``, removed at the end) with the benchmark schema, and gets
the same two measurements as the main servers: a copy made the way the pool makes
it, and ``server.database()`` from a full, idle pool.

The images: ``FRESHDB_MATRIX_IMAGES`` (space-separated; the Makefile exports the
local stand-ins when they exist), else the official images. The test matrix
(``tests/matrix.py``) reuses :func:`measure` for its median copy time per server.
"""

from __future__ import annotations

import dataclasses
import os
import re

from benchmarks.acquire import acquire_samples
from benchmarks.context import SCHEMAS, BenchContext, wait_until_idle
from benchmarks.per_test import clone_samples
from benchmarks.report import Figure
from benchmarks.stats import milliseconds
from freshdb import DatabaseServer

GROUP_COPY = "One copy of the template, per server of the matrix (the pool's background work)"
GROUP_ACQUIRE = "Acquire alone, warm pool, per server of the matrix"

MATRIX_VARIABLE = "FRESHDB_MATRIX_IMAGES"
#: Every server freshdb is tested on, as official images.
OFFICIAL_MATRIX = (
    "postgres:15",
    "postgres:17",
    "postgres:18",
    "mariadb:10.11",
    "mariadb:11.8",
    "mysql:9",
)
#: The matrix servers' own prefix: their containers never meet the ``bench`` ones.
PREFIX = "benchmatrix"
ENGINES = ("postgres", "mariadb", "mysql")


def matrix_images() -> list[str]:
    """The images of the matrix: ``FRESHDB_MATRIX_IMAGES``, else the official ones."""
    return os.environ.get(MATRIX_VARIABLE, "").split() or list(OFFICIAL_MATRIX)


def engine_of(image: str) -> str:
    """The engine an image of the matrix runs: its repository's last path segment."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if name not in ENGINES:
        raise ValueError(
            f"cannot tell the engine of {image!r}: name a postgres, mariadb or mysql image"
        )
    return name


@dataclasses.dataclass(frozen=True)
class ServerFigures:
    """What one server of the matrix measured, in seconds."""

    image: str
    engine: str
    #: The version the server reports, e.g. "postgres 18" or "mysql 9.7".
    version: str
    copies: list[float]
    acquires: list[float]


def measure(image: str, *, copies: int, acquires: int) -> ServerFigures:
    """Start a throwaway server of ``image`` with the benchmark schema; time
    ``copies`` copies of its template and ``acquires`` acquires from a warm pool."""
    engine = engine_of(image)
    schema = SCHEMAS / f"{engine}.sql"
    server = DatabaseServer(
        engine, schema=str(schema), image=image, mode="throwaway", prefix=PREFIX
    )
    with server:
        connection = server.dialect.connect(server.address)
        try:
            version = server.dialect.server_version(connection)
        finally:
            connection.close()
        wait_until_idle(server)
        acquired = acquire_samples(server, acquires) if acquires else []
        wait_until_idle(server)
        copied = clone_samples(server, copies) if copies else []
    return ServerFigures(image, engine, version, copied, acquired)


def run(context: BenchContext) -> list[Figure]:
    """A copy and an acquire on every server of the matrix: one line per server in
    each of two groups. A server that cannot run gets its lines, with the reason."""
    copy_figures = []
    acquire_figures = []
    for image in matrix_images():
        key = re.sub(r"[^a-z0-9]+", "_", image.rsplit("/", 1)[-1].lower())
        try:
            figures = measure(image, copies=context.count(20, 5), acquires=context.count(100, 10))
        except Exception as exc:
            # One server that cannot start must not cost the others' lines.
            note = (str(exc).splitlines() or [repr(exc)])[0][:300]
            copy_figures.append(
                Figure(f"servers.{key}.copy", GROUP_COPY, image, "ms", None, note=note)
            )
            acquire_figures.append(
                Figure(f"servers.{key}.acquire", GROUP_ACQUIRE, image, "ms", None, note=note)
            )
            continue
        label = f"{figures.version} ({image})"
        copy_figures.append(
            Figure(f"servers.{key}.copy", GROUP_COPY, label, "ms", milliseconds(figures.copies))
        )
        acquire_figures.append(
            Figure(
                f"servers.{key}.acquire", GROUP_ACQUIRE, label, "ms", milliseconds(figures.acquires)
            )
        )
    return [*copy_figures, *acquire_figures]
