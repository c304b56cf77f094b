"""A sticky container's shape: what decides its name, the chosen host port among it."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshdb import naming
from freshdb.backends.sticky import container_shape
from freshdb.config import Settings, resolve_settings
from freshdb.dialects import dialect_for
from freshdb.errors import ConfigurationError


def shape_hash(settings: Settings, image_id: str | None = "sha256:one") -> str:
    image = "postgres:17"
    spec = dialect_for(settings.engine).container_spec(settings, image, "")
    return naming.settings_hash(container_shape(settings, image, image_id, spec, "127.0.0.1"))


def test_the_port_is_read_from_every_source(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.freshdb]\nport = 55001\n")
    assert resolve_settings(environ={}, pyproject=pyproject).port == 55001
    from_env = resolve_settings(environ={"FRESHDB_PORT": "55002"}, pyproject=pyproject)
    assert from_env.port == 55002
    given = resolve_settings({"port": "55003"}, environ={"FRESHDB_PORT": "55002"})
    assert given.port == 55003
    assert resolve_settings(environ={}, pyproject=False).port is None


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "between 1 and 65535"), ("65536", "between 1 and 65535"), ("x", "must be a number")],
)
def test_a_bad_port_says_what_to_do(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_settings(environ={"FRESHDB_PORT": value}, pyproject=False)


def test_the_chosen_port_is_part_of_the_shape() -> None:
    picked_by_docker = shape_hash(Settings())
    on_one_port = shape_hash(Settings(port=55001))
    assert len({picked_by_docker, on_one_port, shape_hash(Settings(port=55002))}) == 3
    assert shape_hash(Settings(port=55001)) == on_one_port  # stable: a second start reuses it
    # Settings that do not change the container still share it, port or not.
    assert shape_hash(Settings(port=55001, pool_size=7)) == on_one_port


def test_without_a_port_the_shape_is_what_it_was_before_the_setting() -> None:
    settings = Settings(tmpfs_size="1g")
    spec = dialect_for("postgres").container_spec(settings, "postgres:17", "")
    shape = container_shape(settings, "postgres:17", "sha256:one", spec, "127.0.0.1")
    # Containers already running on a port Docker picked keep their names.
    assert set(shape) == {"engine", "image", "image_id", "command", "tmpfs_size", "bind", "format"}
