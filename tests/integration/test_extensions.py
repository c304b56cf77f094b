"""Templates with Postgres extensions: pgvector (HNSW index) and PostGIS (GiST index).

A copy must be the twin of a database the migrations build directly (``pg_dump`` of
both, extension objects and rows included), and its index must serve the queries it
exists for. The official ``postgres`` images ship neither extension (users run
``pgvector/pgvector`` or ``postgis/postgis``); an image without the extension skips
the test with the reason. The local stand-ins of Postgres 17 (pgvector, PostGIS) and
18 (pgvector) are built with them, so there a missing extension is a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import freshdb
from freshdb.migrators import SqlMigrator

pytestmark = [pytest.mark.docker, pytest.mark.server, pytest.mark.compat]

#: Images built with the extension (docker/build-images.sh): a skip there would hide a
#: broken build.
BUILT_WITH = {
    "vector": ("freshdb-local/postgres:17", "freshdb-local/postgres:18"),
    "postgis": ("freshdb-local/postgres:17",),
}

VECTOR_SCHEMA = """
CREATE EXTENSION vector;
CREATE TABLE items (
  id integer PRIMARY KEY,
  label text NOT NULL,
  embedding vector(3) NOT NULL
);
CREATE INDEX items_embedding_hnsw ON items USING hnsw (embedding vector_l2_ops);
INSERT INTO items (id, label, embedding)
  SELECT n, 'item ' || n, ARRAY[n, n % 7, n % 11]::real[]::vector(3)
  FROM generate_series(1, 200) AS n;
"""

POSTGIS_SCHEMA = """
CREATE EXTENSION postgis;
CREATE TABLE places (
  id integer PRIMARY KEY,
  name text NOT NULL,
  geom geometry(Point, 4326) NOT NULL
);
CREATE INDEX places_geom_gist ON places USING gist (geom);
INSERT INTO places (id, name, geom)
  SELECT n, 'place ' || n, ST_SetSRID(ST_MakePoint(n % 20, n / 20), 4326)
  FROM generate_series(0, 399) AS n;
"""


@pytest.fixture(scope="module")
def available(run_prefix: str, postgres_image: str) -> Iterator[set[str]]:
    """The extensions the Postgres image under test can create."""
    with freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=run_prefix, pool_size=0
    ) as server:
        conn = server.dialect.connect(server.address)
        try:
            rows = server.dialect.rows(conn, "SELECT name FROM pg_available_extensions")
        finally:
            conn.close()
        yield {str(row[0]) for row in rows}


def require(extension: str, available: set[str], image: str) -> None:
    """Skip (or fail, on an image built with it) when ``extension`` is missing."""
    if extension in available:
        return
    if image in BUILT_WITH[extension]:
        pytest.fail(
            f"{image} is built with the {extension!r} extension but does not offer it: "
            f"rebuild it (FORCE=1 bash docker/build-images.sh {image.rsplit('/', 1)[-1]})"
        )
    pytest.skip(
        f"{image} has no {extension!r} extension (pg_available_extensions); run an image "
        "that ships it to test it"
    )


def pg_dump(docker_client: Any, server: freshdb.DatabaseServer, database: str) -> str:
    """The database as ``pg_dump`` prints it, run inside the server's container."""
    container = docker_client.containers.get(server.running.container_id)  # type: ignore[union-attr]
    result = container.exec_run(["pg_dump", "-U", "postgres", "--no-owner", "-d", database])
    assert result.exit_code == 0, result.output.decode()
    # Postgres 17.6+/18 print a random per-dump key on these lines.
    return "\n".join(
        line
        for line in result.output.decode().splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


@contextlib.contextmanager
def copy_and_reference(
    tmp_path: Path, run_prefix: str, postgres_image: str, docker_client: Any, schema: str
) -> Iterator[tuple[freshdb.Database, str, str]]:
    """A copy of the template of ``schema``, its dump and the dump of a database the
    same migrations built directly (the reference)."""
    path = tmp_path / "schema.sql"
    path.write_text(schema)
    reference = f"ref_{run_prefix}_{tmp_path.name[-6:]}".lower()
    with freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=run_prefix, schema=path
    ) as server:
        admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{reference}"')
        try:
            direct = sa.create_engine(server.url.set(database=reference), poolclass=sa.NullPool)
            with direct.connect() as conn:
                SqlMigrator(path).migrate(conn)
                conn.commit()
            direct.dispose()
            with server.database() as db:
                yield (
                    db,
                    pg_dump(docker_client, server, db.name),
                    pg_dump(docker_client, server, reference),
                )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{reference}" WITH (FORCE)')
            admin.dispose()


def uses_index(conn: sa.Connection, query: str, index: str) -> bool:
    """Whether the planner answers ``query`` with ``index`` when it may choose."""
    conn.exec_driver_sql("SET enable_seqscan = off")
    plan = "\n".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {query}"))
    conn.exec_driver_sql("RESET enable_seqscan")
    return index in plan


def test_a_pgvector_template_with_an_hnsw_index_copies_faithfully(
    available: set[str],
    postgres_image: str,
    tmp_path: Path,
    run_prefix: str,
    docker_client: Any,
) -> None:
    require("vector", available, postgres_image)
    with copy_and_reference(tmp_path, run_prefix, postgres_image, docker_client, VECTOR_SCHEMA) as (
        db,
        copy_dump,
        reference_dump,
    ):
        for needle in (
            "CREATE EXTENSION IF NOT EXISTS vector",
            "embedding public.vector(3) NOT NULL",
            "CREATE INDEX items_embedding_hnsw ON public.items USING hnsw (embedding "
            "public.vector_l2_ops)",
            "[5,5,5]",  # a row: item 5
        ):
            assert needle in copy_dump, needle
        assert copy_dump == reference_dump
        nearest = "SELECT id FROM items ORDER BY embedding <-> '[40,5,7]' LIMIT 1"
        with db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 200
            assert uses_index(conn, nearest, "items_embedding_hnsw")
            assert conn.exec_driver_sql(nearest).scalar() == 40
            # The index keeps working for rows written to the copy.
            conn.exec_driver_sql(
                "INSERT INTO items (id, label, embedding) VALUES (1000, 'new', '[500,0,0]')"
            )
            assert (
                conn.exec_driver_sql(
                    "SELECT id FROM items ORDER BY embedding <-> '[499,0,0]' LIMIT 1"
                ).scalar()
                == 1000
            )
            conn.commit()


def test_a_postgis_template_with_a_gist_index_copies_faithfully(
    available: set[str],
    postgres_image: str,
    tmp_path: Path,
    run_prefix: str,
    docker_client: Any,
) -> None:
    require("postgis", available, postgres_image)
    with copy_and_reference(
        tmp_path, run_prefix, postgres_image, docker_client, POSTGIS_SCHEMA
    ) as (db, copy_dump, reference_dump):
        for needle in (
            "CREATE EXTENSION IF NOT EXISTS postgis",
            "geom public.geometry(Point,4326) NOT NULL",
            "CREATE INDEX places_geom_gist ON public.places USING gist (geom)",
        ):
            assert needle in copy_dump, needle
        assert copy_dump == reference_dump
        near = (
            "SELECT id FROM places WHERE ST_DWithin(geom, ST_SetSRID(ST_MakePoint(3, 2), 4326), "
            "0.5) ORDER BY id"
        )
        with db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM places").scalar() == 400
            # PostGIS's own catalogue came along: SRID 4326 is known in the copy.
            assert (
                conn.exec_driver_sql(
                    "SELECT auth_name FROM spatial_ref_sys WHERE srid = 4326"
                ).scalar()
                == "EPSG"
            )
            assert uses_index(conn, near, "places_geom_gist")
            assert [row[0] for row in conn.exec_driver_sql(near)] == [43]
            distance = conn.exec_driver_sql(
                "SELECT ST_Distance(a.geom, b.geom) FROM places a, places b "
                "WHERE a.id = 0 AND b.id = 21"
            ).scalar()
            assert distance == pytest.approx(2**0.5)
