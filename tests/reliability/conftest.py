"""Shared tools of the reliability suite: engines, admin views, processes to kill.

Every test here runs real servers in Docker. A test that needs a server nobody else
touches takes its own prefix (``own_prefix``), so the session teardown in
``tests/conftest.py`` still removes it: the prefix starts with this run's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import freshdb
from freshdb import naming
from freshdb.dialects import dialect_for
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress

from ..conftest import ENGINES, RUN_PREFIX, image_for

#: Generous bound for "never hangs": anything slower than this is a hang.
NEVER_HANGS = 60.0


@dataclasses.dataclass(frozen=True)
class Engine:
    """An engine under test and the image that runs it."""

    name: str
    image: str

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect (all its SQL)."""
        return dialect_for(self.name)

    def server(self, prefix: str, **settings: Any) -> freshdb.DatabaseServer:
        """A server of this engine (sticky unless ``mode`` says otherwise)."""
        settings.setdefault("mode", "sticky")
        return freshdb.DatabaseServer(self.name, image=self.image, prefix=prefix, **settings)


def new_prefix() -> str:
    """A prefix no other test uses; it still starts with this run's (teardown finds it)."""
    return RUN_PREFIX[:7] + secrets.token_hex(4)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn (Postgres, then the MySQL-family server under test):
    the behaviour under test is the same for both."""
    return Engine(str(request.param), image_for(str(request.param)))


@pytest.fixture
def postgres(postgres_image: str) -> Engine:
    """Postgres only (for what does not depend on the engine)."""
    return Engine("postgres", postgres_image)


# -- looking at a server as its administrator -------------------------------------------
class Admin:
    """An admin connection to a server, to look at and tamper with its databases."""

    def __init__(self, engine_name: str, address: ServerAddress) -> None:
        self.dialect = dialect_for(engine_name)
        self.family = self.dialect.family
        self.address = address
        self.conn: DBAPIConnection = self.dialect.connect(address)

    @classmethod
    def of(cls, server: freshdb.DatabaseServer) -> Admin:
        """An admin connection to a started server."""
        return cls(server.settings.engine, server.address)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str) -> None:
        """Run one statement (autocommit)."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    def quote(self, name: str) -> str:
        """A quoted identifier, for decoys whose names freshdb would refuse."""
        if self.family == "postgres":
            return '"' + name.replace('"', '""') + '"'
        return "`" + name.replace("`", "``") + "`"

    def all_databases(self) -> set[str]:
        """Every database on the server."""
        sql = (
            "SELECT datname FROM pg_database"
            if self.family == "postgres"
            else "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
        )
        return {str(row[0]) for row in self.dialect.rows(self.conn, sql)}

    def databases(self, prefix: str) -> list[naming.ParsedName]:
        """Every database freshdb made with ``prefix``, parsed."""
        names = self.dialect.list_databases(self.conn, prefix)
        return [p for n in names if (p := naming.parse_database_name(prefix, n))]

    def create_database(self, name: str) -> None:
        """Create a database by any name (decoys)."""
        self.execute(f"CREATE DATABASE {self.quote(name)}")

    def drop_database(self, name: str) -> None:
        """Drop a database by any name (decoys)."""
        suffix = " WITH (FORCE)" if self.family == "postgres" else ""
        self.execute(f"DROP DATABASE IF EXISTS {self.quote(name)}{suffix}")

    def template_complete(self, name: str) -> bool:
        """Whether the template of that name is complete (so copies are made from it)."""
        return self.dialect.template_is_complete(self.conn, name)

    def live_owners(self, owners: list[str]) -> set[str]:
        """Which owner sessions still hold their lease."""
        return self.dialect.live_owners(self.conn, owners)

    def busy_sessions(self) -> int:
        """Other connections running a statement right now."""
        if self.family == "postgres":
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
        else:
            sql = (
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' "
                "AND ID <> CONNECTION_ID()"
            )
        return int(self.dialect.scalar(self.conn, sql))

    def wait_until_gone(self, owner: str) -> None:
        """Wait until a killed session's lease is released and nothing of it still runs.

        The server finishes a statement a killed client sent (a CREATE DATABASE, say)
        before it notices the client is gone; only then is the state settled.
        """
        deadline = time.monotonic() + NEVER_HANGS
        while self.live_owners([owner]) or self.busy_sessions():
            assert time.monotonic() < deadline, f"owner {owner} still holds its lease"
            time.sleep(0.05)


def template_of(server: freshdb.DatabaseServer) -> str:
    """The template a started server clones."""
    assert server.template is not None
    return server.template


# -- processes to start and kill ----------------------------------------------------------
class Program:
    """A Python program in its own process, reporting JSON lines on stdout."""

    def __init__(self, code: str, params: dict[str, Any], env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), json.dumps(params)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "CI": "", **(env or {})},
            cwd=Path(__file__).parent,
        )

    def report(self) -> dict[str, Any]:
        """The next JSON line the program prints (fails if it exits first)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(NEVER_HANGS)
            assert self.process.stderr is not None
            raise AssertionError(
                f"the program ended without reporting:\n{self.process.stderr.read()}"
            )
        return dict(json.loads(line))

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(NEVER_HANGS)

    def finish(self) -> tuple[str, str]:
        """Wait for a normal end; its stdout and stderr (fails on a non-zero exit)."""
        out, err = self.process.communicate(timeout=NEVER_HANGS * 2)
        assert self.process.returncode == 0, err
        return out, err


@pytest.fixture
def programs() -> Iterator[Callable[..., Program]]:
    """Start programs; any still running at the end of the test is killed."""
    started: list[Program] = []

    def start(code: str, params: dict[str, Any], env: dict[str, str] | None = None) -> Program:
        program = Program(code, params, env)
        started.append(program)
        return program

    yield start
    for program in started:
        if program.process.poll() is None:
            program.kill()
        for stream in (program.process.stdout, program.process.stderr):
            if stream is not None:
                stream.close()


def containers_named(docker_client: Any, prefix: str) -> list[Any]:
    """Every container whose name starts with ``prefix-`` (labelled or not)."""
    return [
        c for c in docker_client.containers.list(all=True) if str(c.name).startswith(f"{prefix}-")
    ]


def freshdb_cli(
    engine: Engine, prefix: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m freshdb ARGS`` for this engine, image and prefix (must succeed)."""
    # A developer's own FRESHDB_* settings must not steer the command.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHDB_")}
    env["CI"] = ""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "freshdb",
            *args,
            "--engine",
            engine.name,
            "--image",
            engine.image,
            "--prefix",
            prefix,
            "--mode",
            "sticky",
        ],
        capture_output=True,
        text=True,
        timeout=NEVER_HANGS * 2,
        env=env,
        cwd=cwd or Path(__file__).parent,
    )
    assert result.returncode == 0, f"freshdb {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result
