"""A Postgres container's first start without the entrypoint's temporary server.

freshdb replaces the official image's entrypoint with
:mod:`freshdb.dialects.postgres.direct_start`; these start real containers to show
that it ends where the entrypoint would, and hands over to the entrypoint where it
cannot (init scripts, a database of another name, data already there, not root).
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import freshdb
from freshdb.dialects import dialect_for
from freshdb.dialects.postgres.direct_start import MARKER
from freshdb.errors import ServerStartError

pytestmark = pytest.mark.docker

#: What the image's own entrypoint prints once its temporary server has done its work.
ENTRYPOINT_DONE = "PostgreSQL init process complete"

#: How the server came out: each database's encoding, locale provider, collation and
#: ctype (initdb's choices, from the image's environment), and the server's locale.
LOCALE_FACTS = """
SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype,
       current_setting('lc_messages'), current_setting('server_encoding')
FROM pg_database WHERE datname IN ('postgres', 'template0', 'template1') ORDER BY datname
"""


def server_facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What a direct start must leave as the entrypoint does."""
    return {
        "locale": conn.execute(LOCALE_FACTS).fetchall(),
        "hba": conn.execute(
            "SELECT type, database, user_name, address, netmask, auth_method "
            "FROM pg_hba_file_rules ORDER BY line_number"
        ).fetchall(),
        "listen_addresses": conn.execute("SHOW listen_addresses").fetchone(),
        "fsync": conn.execute("SHOW fsync").fetchone(),
        "user": conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone(),
    }


def connect_when_ready(container: Any, password: str, dbname: str = "postgres") -> Any:
    """A TCP connection with the password to a container started by hand (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        container.reload()
        if container.status == "exited":
            pytest.fail(f"the container exited:\n{container.logs().decode()}")
        bindings = (container.ports or {}).get("5432/tcp") or []
        if bindings:
            try:
                return psycopg.connect(
                    host="127.0.0.1",
                    port=int(bindings[0]["HostPort"]),
                    user="postgres",
                    password=password,
                    dbname=dbname,
                    connect_timeout=2,
                    autocommit=True,
                )
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


@pytest.fixture
def run_by_hand(docker_client: Any, run_prefix: str) -> Iterator[Callable[..., Any]]:
    """Runs the Postgres image as freshdb would (its spec, data on tmpfs) with changes;
    the containers are removed at the end."""
    made: list[Any] = []

    def run(
        image: str,
        password: str,
        *,
        own_entrypoint: bool = False,
        environment: dict[str, str] | None = None,
        tmpfs: bool = True,
        **options: Any,
    ) -> Any:
        spec = dialect_for("postgres").container_spec(
            freshdb.resolve_settings({"engine": "postgres"}), image, password
        )
        volumes = list(docker_client.images.get(image).attrs["Config"].get("Volumes") or {})
        container = docker_client.containers.run(
            image,
            command=list(spec.command),
            entrypoint=None if own_entrypoint else list(spec.entrypoint),
            environment={**spec.environment, **(environment or {})},
            tmpfs={path: "rw,size=512m,mode=1777" for path in volumes} if tmpfs else None,
            ports={"5432/tcp": ("127.0.0.1", None)},
            labels={"io.freshdb.prefix": run_prefix},
            detach=True,
            **options,
        )
        made.append(container)
        return container

    yield run
    for container in made:
        container.remove(force=True, v=True)


@pytest.fixture
def derived_image(
    docker_client: Any, postgres_image: str, run_prefix: str
) -> Iterator[Callable[..., str]]:
    """Builds an image from the Postgres image under test, as a user's own image
    would be (``FROM`` it, plus lines and files); removed at the end."""
    made: list[str] = []

    def build(lines: list[str], files: dict[str, tuple[str, int]] | None = None) -> str:
        tag = f"freshdb-test/postgres-derived:{run_prefix}-{secrets.token_hex(3)}"
        dockerfile = "\n".join([f"FROM {postgres_image}", *lines]) + "\n"
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as archive:
            for name, (text, mode) in {"Dockerfile": (dockerfile, 0o644), **(files or {})}.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                archive.addfile(info, io.BytesIO(data))
        context.seek(0)
        docker_client.images.build(
            fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True
        )
        made.append(tag)
        return tag

    yield build
    for tag in made:
        docker_client.images.remove(tag, force=True)


def logs_of(docker_client: Any, server: freshdb.DatabaseServer) -> str:
    running = server.running
    assert running is not None and running.container_id
    return str(docker_client.containers.get(running.container_id).logs().decode())


def admin_connection(server: freshdb.DatabaseServer) -> Any:
    """A TCP connection as the admin user, with the container's password."""
    assert server.running is not None
    address = server.running.address
    return psycopg.connect(
        host=address.host,
        port=address.port,
        user=address.user,
        password=address.password,
        dbname=address.admin_database,
        autocommit=True,
    )


@pytest.mark.server
@pytest.mark.compat
def test_a_new_server_starts_directly_and_ends_as_the_entrypoint_would(
    docker_client: Any, fresh_prefix: str, postgres_image: str, run_by_hand: Any
) -> None:
    with freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="throwaway", prefix=fresh_prefix, pool_size=1
    ) as server:
        logs = logs_of(docker_client, server)
        assert MARKER in logs
        assert ENTRYPOINT_DONE not in logs
        with admin_connection(server) as conn:
            direct = server_facts(conn)
        with server.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SHOW fsync").scalar() == "off"

    # The same spec, run through the image's own entrypoint: the same server.
    password = secrets.token_hex(8)
    container = run_by_hand(postgres_image, password, own_entrypoint=True)
    with connect_when_ready(container, password) as conn:
        through_entrypoint = server_facts(conn)
    assert ENTRYPOINT_DONE in container.logs().decode()
    assert direct == through_entrypoint
    assert direct["fsync"] == ("off",)
    assert direct["listen_addresses"] == ("*",)
    assert direct["hba"][-1][-1] == "md5"  # the line a password login over TCP takes


@contextlib.contextmanager
def started_through_the_entrypoint(
    docker_client: Any, image: str, prefix: str
) -> Iterator[freshdb.DatabaseServer]:
    """A throwaway server of ``image`` that must have started through the image's
    entrypoint (not directly), and hands out working copies."""
    with freshdb.DatabaseServer(
        "postgres", image=image, mode="throwaway", prefix=prefix, pool_size=1
    ) as server:
        logs = logs_of(docker_client, server)
        assert MARKER not in logs
        assert ENTRYPOINT_DONE in logs
        with server.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        yield server


@pytest.mark.server
def test_an_image_with_init_scripts_starts_through_its_entrypoint(
    docker_client: Any, fresh_prefix: str, derived_image: Any
) -> None:
    image = derived_image(
        ["COPY 10-table.sql 20-role.sh /docker-entrypoint-initdb.d/"],
        {
            "10-table.sql": ("CREATE TABLE made_by_init_sql (id int);\n", 0o644),
            "20-role.sh": (
                "#!/bin/sh\nset -e\n"
                'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" '
                "-c 'CREATE ROLE made_by_init_sh'\n",
                0o755,
            ),
        },
    )
    with (
        started_through_the_entrypoint(docker_client, image, fresh_prefix) as server,
        admin_connection(server) as conn,
    ):
        assert conn.execute("SELECT to_regclass('made_by_init_sql')").fetchone() == (
            "made_by_init_sql",
        )
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'made_by_init_sh'"
        ).fetchone() == (1,)


@pytest.mark.server
def test_the_direct_start_turned_off_starts_through_the_entrypoint(
    docker_client: Any, fresh_prefix: str, postgres_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRESHDB_DIRECT_START", "off")
    with started_through_the_entrypoint(docker_client, postgres_image, fresh_prefix) as server:
        assert server.settings.direct_start is False


def test_an_image_with_its_own_entrypoint_script_starts_through_it(
    docker_client: Any, fresh_prefix: str, derived_image: Any
) -> None:
    # A derived image's own docker-entrypoint.sh (here: the image's, without the
    # official one's telltale function name) may do what the direct start skips.
    image = derived_image(
        ["RUN sed -i '/docker_temp_server_start/d' \"$(command -v docker-entrypoint.sh)\""]
    )
    with started_through_the_entrypoint(docker_client, image, fresh_prefix):
        pass  # the checks are the helper's


@pytest.mark.server
def test_initdb_arguments_of_the_image_are_honoured_as_the_entrypoint_reads_them(
    docker_client: Any, fresh_prefix: str, derived_image: Any
) -> None:
    # Quoted, as the entrypoint evaluates the variable.
    image = derived_image(["ENV POSTGRES_INITDB_ARGS=\"--encoding=LATIN1 --locale='C'\""])
    with freshdb.DatabaseServer(
        "postgres", image=image, mode="throwaway", prefix=fresh_prefix, pool_size=1
    ) as server:
        assert MARKER in logs_of(docker_client, server)
        with admin_connection(server) as conn:
            assert conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database "
                "WHERE datname = 'postgres'"
            ).fetchone() == ("LATIN1", "C")


@pytest.mark.server
def test_initdb_failing_on_the_direct_path_is_reported_with_its_log(
    fresh_prefix: str, derived_image: Any
) -> None:
    image = derived_image(['ENV POSTGRES_INITDB_ARGS="--no-such-initdb-option"'])
    server = freshdb.DatabaseServer(
        "postgres", image=image, mode="throwaway", prefix=fresh_prefix, pool_size=1
    )
    with pytest.raises(ServerStartError, match="stopped while starting") as raised:
        server.start()
    message = str(raised.value)
    assert "no-such-initdb-option" in message
    assert "initdb" in message


@pytest.mark.server
def test_the_entrypoint_starts_what_the_direct_start_leaves_to_it(
    postgres_image: str, run_by_hand: Any
) -> None:
    password = secrets.token_hex(8)
    # A database initdb does not make: created on the entrypoint's temporary server.
    named = run_by_hand(postgres_image, password, environment={"POSTGRES_DB": "app"})
    # Not root (`docker run --user`): the data directory is not the script's to make.
    # (On the image's volume, which is the postgres user's: a root-owned tmpfs is not.)
    not_root = run_by_hand(postgres_image, password, user="postgres", tmpfs=False)
    for container in (named, not_root):
        with connect_when_ready(container, password) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        logs = container.logs().decode()
        assert MARKER not in logs and ENTRYPOINT_DONE in logs, logs
    with connect_when_ready(named, password, dbname="app") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("app",)


@pytest.mark.server
def test_a_restarted_container_with_its_data_starts_through_the_entrypoint(
    postgres_image: str, run_by_hand: Any
) -> None:
    password = secrets.token_hex(8)
    # Data kept across a restart (no tmpfs): the second start finds it initialised.
    container = run_by_hand(postgres_image, password, tmpfs=False)
    with connect_when_ready(container, password) as conn:
        conn.execute("CREATE TABLE kept (id int)")
    container.stop(timeout=10)
    container.start()
    with connect_when_ready(container, password) as conn:
        assert conn.execute("SELECT to_regclass('kept')").fetchone() == ("kept",)
    logs = container.logs().decode()
    assert logs.count(MARKER) == 1
    assert ENTRYPOINT_DONE not in logs
