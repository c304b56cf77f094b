"""Finding the Docker engine and the address its published ports answer on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from freshdb.backends.docker_discovery import (
    linux_default_gateway,
    locate_docker,
    reachability,
)


def test_docker_host_wins() -> None:
    found = locate_docker({"DOCKER_HOST": "tcp://build:2375"}, Path("/nonexistent"), lambda p: True)
    assert (found.url, found.source) == ("tcp://build:2375", "DOCKER_HOST")


def test_active_context_is_read(tmp_path: Path) -> None:
    config = tmp_path / ".docker"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"colima").hexdigest()
    meta.mkdir(parents=True)
    (config / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    (meta / "meta.json").write_text(
        json.dumps({"Name": "colima", "Endpoints": {"docker": {"Host": "unix:///x/colima.sock"}}})
    )
    found = locate_docker({}, tmp_path, lambda p: False)
    assert found.url == "unix:///x/colima.sock"
    assert "colima" in found.source


def test_well_known_sockets_in_order(tmp_path: Path) -> None:
    orbstack = tmp_path / ".orbstack" / "run" / "docker.sock"
    found = locate_docker({"XDG_RUNTIME_DIR": "/run/user/1"}, tmp_path, lambda p: p == orbstack)
    assert found.url == f"unix://{orbstack}"
    assert found.source == "OrbStack"
    rootless = locate_docker(
        {"XDG_RUNTIME_DIR": "/run/user/1"}, tmp_path, lambda p: p == Path("/run/user/1/docker.sock")
    )
    assert rootless.source == "rootless Docker"
    podman = locate_docker(
        {"XDG_RUNTIME_DIR": "/run/user/1"},
        tmp_path,
        lambda p: p == Path("/run/user/1/podman/podman.sock"),
    )
    assert podman.source == "podman (rootless)"


def test_nothing_found_lists_what_was_tried(tmp_path: Path) -> None:
    found = locate_docker({}, tmp_path, lambda p: False)
    assert found.url is None
    assert any("Docker Desktop" in t for t in found.tried)
    assert any("colima" in t for t in found.tried)


def test_local_engine_binds_loopback_only() -> None:
    reach = reachability("unix:///var/run/docker.sock", {}, in_container=False)
    assert (reach.host, reach.bind) == ("127.0.0.1", "127.0.0.1")


def test_remote_engine_is_reached_at_its_host() -> None:
    reach = reachability("tcp://docker:2375", {}, in_container=True)
    assert (reach.host, reach.bind) == ("docker", "0.0.0.0")
    overridden = reachability("ssh://me@box", {"FRESHDB_HOST": "10.1.2.3"}, in_container=False)
    assert (overridden.host, overridden.bind) == ("10.1.2.3", "0.0.0.0")


def test_inside_a_container_uses_the_gateway_unless_the_engine_is_ours() -> None:
    sibling = reachability(
        "unix:///var/run/docker.sock",
        {},
        in_container=True,
        default_gateway=lambda: "172.17.0.1",
        engine_hostname="the-host",
    )
    assert (sibling.host, sibling.bind) == ("172.17.0.1", "0.0.0.0")
    import socket

    same = reachability(
        "unix:///var/run/docker.sock",
        {},
        in_container=True,
        default_gateway=lambda: "172.17.0.1",
        engine_hostname=socket.gethostname(),
    )
    assert (same.host, same.bind) == ("127.0.0.1", "127.0.0.1")


def test_default_gateway_from_proc_route(tmp_path: Path) -> None:
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway\tFlags\n"
        "eth0\t0011A8C0\t00000000\t0001\n"
        "eth0\t00000000\t0100A8C0\t0003\n"
    )
    assert linux_default_gateway(route) == "192.168.0.1"
