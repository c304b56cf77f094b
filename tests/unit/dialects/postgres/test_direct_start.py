"""The direct-start entrypoint of Postgres containers: what the spec asks Docker for.

What the script does in a container is tested on real containers
(tests/integration/test_postgres_direct_start.py).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

import freshdb
from freshdb.backends import sticky
from freshdb.dialects import dialect_for
from freshdb.dialects.base import ContainerSpec
from freshdb.dialects.postgres.direct_start import ENTRYPOINT, MARKER, SCRIPT


def postgres_spec(password: str = "secret") -> ContainerSpec:
    settings = freshdb.resolve_settings({"engine": "postgres", "max_connections": 150})
    return dialect_for("postgres").container_spec(settings, "postgres:17", password)


def test_the_spec_runs_the_script_with_the_server_options_as_its_arguments() -> None:
    spec = postgres_spec()
    assert tuple(spec.entrypoint) == ENTRYPOINT
    assert list(spec.entrypoint[:3]) == ["sh", "-c", SCRIPT]
    # Options only: the script (and the entrypoint it falls back to) puts postgres first.
    assert all(arg == "-c" for arg in spec.command[::2])
    assert "max_connections=150" in spec.command
    assert "fsync=off" in spec.command


def test_the_script_falls_back_to_the_official_entrypoint_and_says_when_it_does_not() -> None:
    assert 'exec docker-entrypoint.sh "$@"' in SCRIPT
    assert f"echo '{MARKER}'" in SCRIPT


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell to parse the script")
def test_the_script_is_valid_posix_shell() -> None:
    result = subprocess.run(["sh", "-n", "-c", SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_entrypoint_does_not_change_a_sticky_containers_name() -> None:
    # Started with the image's entrypoint or the script, the server ends the same:
    # a sticky container made before the script is found and reused.
    settings = freshdb.resolve_settings({"engine": "postgres"})
    spec = postgres_spec("")
    before = dataclasses.replace(spec, entrypoint=())
    assert sticky.container_shape(
        settings, "postgres:17", "sha256:1", spec, "127.0.0.1"
    ) == sticky.container_shape(settings, "postgres:17", "sha256:1", before, "127.0.0.1")


def test_the_direct_start_turned_off_leaves_the_image_entrypoint_the_same_command() -> None:
    settings = freshdb.Settings(engine="postgres", direct_start=False)
    spec = dialect_for("postgres").container_spec(settings, "postgres:17", "secret")
    assert tuple(spec.entrypoint) == ()
    on = dialect_for("postgres").container_spec(
        dataclasses.replace(settings, direct_start=True), "postgres:17", "secret"
    )
    assert spec.command == on.command and spec.environment == on.environment
