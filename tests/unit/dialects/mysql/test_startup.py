"""The MySQL/MariaDB container's start script (freshdb.dialects.mysql.startup): what can
be known without a container. Its behaviour is tested on real servers in
tests/integration/test_mysql_startup.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from freshdb.config import Settings
from freshdb.dialects.mysql import MySQLDialect
from freshdb.dialects.mysql.startup import ENTRYPOINT


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_the_script_parses_in_the_official_images_shells(shell: str) -> None:
    # /bin/sh is dash in the mariadb image (Ubuntu), bash in the mysql one (Oracle Linux).
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    command, option, script, name = ENTRYPOINT
    assert (command, option) == ("sh", "-c")
    result = subprocess.run([shell, "-n", "-c", script, name], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("engine", "image"),
    [
        ("mariadb", "mariadb:10.11"),
        ("mariadb", "mariadb:11.8"),
        ("mysql", "mysql:8.0.19"),
        ("mysql", "mysql:9.7"),
    ],
)
def test_the_container_runs_the_script_with_only_server_flags(engine: str, image: str) -> None:
    spec = MySQLDialect().container_spec(Settings(engine=engine), image, "secret-pw")
    assert tuple(spec.entrypoint) == ENTRYPOINT
    # The script hands anything but "--" flags over to the image's entrypoint: a flag
    # spelt otherwise would silently cost every start its temporary server again.
    assert spec.command and all(flag.startswith("--") for flag in spec.command)
    # The password reaches the script through the environment only.
    assert not any("secret-pw" in part for part in spec.entrypoint)
    assert spec.environment["MARIADB_ROOT_PASSWORD"] == spec.environment["MYSQL_ROOT_PASSWORD"]


def test_the_direct_start_turned_off_leaves_the_image_entrypoint() -> None:
    off = MySQLDialect().container_spec(
        Settings(engine="mariadb", direct_start=False), "mariadb:11.8", "pw"
    )
    on = MySQLDialect().container_spec(Settings(engine="mariadb"), "mariadb:11.8", "pw")
    assert tuple(off.entrypoint) == () and tuple(on.entrypoint) == ENTRYPOINT
    assert off.command == on.command and off.environment == on.environment
