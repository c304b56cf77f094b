"""Finding the Docker engine and the address its published ports answer on.

Docker contexts are read from a temporary ``DOCKER_CONFIG`` directory laid out as
the docker CLI lays it out; no engine is needed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from freshdb.backends.docker_discovery import (
    docker_client,
    linux_default_gateway,
    locate_docker,
    reachability,
)
from freshdb.errors import DockerUnavailableError

#: A fixed API version: the client is built without asking an engine for its own.
API_VERSION = "1.44"


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty docker CLI configuration directory, so the machine's own is never read."""
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return config


def write_context(
    config: Path, name: str, host: str, tls: dict[str, str] | None = None, current: bool = False
) -> None:
    """A context as `docker context create` stores it (and `docker context use`)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if tls:
        material = config / "contexts" / "tls" / digest / "docker"
        material.mkdir(parents=True)
        for filename, text in tls.items():
            (material / filename).write_text(text)
    settings_file = config / "config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    if current:
        settings["currentContext"] = name
    settings_file.write_text(json.dumps(settings))


def test_docker_host_wins() -> None:
    found = locate_docker({"DOCKER_HOST": "tcp://build:2375"}, Path("/nonexistent"), lambda p: True)
    assert (found.url, found.source) == ("tcp://build:2375", "DOCKER_HOST")


def test_active_context_is_read(tmp_path: Path, docker_config: Path) -> None:
    write_context(docker_config, "colima", "unix:///x/colima.sock", current=True)
    found = locate_docker({}, tmp_path, lambda p: False)
    assert found.url == "unix:///x/colima.sock"
    assert "colima" in found.source
    assert found.tls is None


def test_docker_context_variable_wins_over_the_current_context(
    tmp_path: Path, docker_config: Path
) -> None:
    write_context(docker_config, "colima", "unix:///x/colima.sock", current=True)
    write_context(docker_config, "build", "ssh://me@build-box")
    found = locate_docker({"DOCKER_CONTEXT": "build"}, tmp_path, lambda p: False)
    assert (found.url, found.source) == ("ssh://me@build-box", "docker context 'build'")
    # DOCKER_HOST still wins over any context, as it does for the docker CLI.
    host = locate_docker(
        {"DOCKER_CONTEXT": "build", "DOCKER_HOST": "tcp://other:2375"}, tmp_path, lambda p: False
    )
    assert host.url == "tcp://other:2375"


def test_a_tls_context_gives_a_client_configured_for_tls(
    tmp_path: Path, docker_config: Path
) -> None:
    write_context(
        docker_config,
        "secure",
        "tcp://build-box:2376",
        tls={"ca.pem": "ca", "cert.pem": "cert", "key.pem": "key"},
        current=True,
    )
    found = locate_docker({}, tmp_path, lambda p: False)
    assert found.url == "tcp://build-box:2376"
    assert found.tls is not None
    client = docker_client(found, api_version=API_VERSION)
    material = docker_config / "contexts" / "tls" / hashlib.sha256(b"secure").hexdigest()
    assert client.api.base_url == "https://build-box:2376"
    assert client.api.cert == (
        str(material / "docker" / "cert.pem"),
        str(material / "docker" / "key.pem"),
    )
    assert client.api.verify == str(material / "docker" / "ca.pem")


def test_a_context_without_tls_material_gives_a_plain_client(
    tmp_path: Path, docker_config: Path
) -> None:
    write_context(docker_config, "plain", "tcp://build-box:2375", current=True)
    client = docker_client(locate_docker({}, tmp_path, lambda p: False), api_version=API_VERSION)
    assert client.api.base_url == "http://build-box:2375"
    assert client.api.cert is None


def test_the_default_context_means_the_local_sockets(tmp_path: Path, docker_config: Path) -> None:
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "default"}))
    socket_path = Path("/var/run/docker.sock")
    found = locate_docker({}, tmp_path, lambda p: p == socket_path)
    assert (found.url, found.source) == (f"unix://{socket_path}", "Docker Engine")


@pytest.mark.parametrize("chosen_by", ["DOCKER_CONTEXT", "config.json"])
def test_a_missing_context_is_a_clear_error(
    tmp_path: Path, docker_config: Path, chosen_by: str
) -> None:
    environ = {}
    if chosen_by == "DOCKER_CONTEXT":
        environ["DOCKER_CONTEXT"] = "gone"
    else:
        (docker_config / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    with pytest.raises(DockerUnavailableError) as raised:
        locate_docker(environ, tmp_path, lambda p: True)
    message = str(raised.value)
    assert "'gone'" in message
    assert "docker context ls" in message
    assert "DOCKER_HOST" in message


def test_nothing_found_says_what_to_do(tmp_path: Path) -> None:
    found = locate_docker({}, tmp_path, lambda p: False)
    with pytest.raises(DockerUnavailableError, match=r"start Docker .* set DOCKER_HOST"):
        docker_client(found)


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
