"""Reading a local Docker engine's answers without the Docker SDK.

A warm start asks the engine two questions (is this container still running, with
this image and port?) and nothing else. Importing the Docker SDK costs more than
the whole rest of such a start (its HTTP stack: 70-190 ms measured), so those two
questions go as plain HTTP GETs over the engine's Unix socket. Only for a local
engine on a Unix socket; any other engine (TCP, TLS, SSH) is left to the SDK.
"""

from __future__ import annotations

import http.client
import json
import socket
from types import TracebackType
from typing import Any
from urllib.parse import quote

#: How long one question may take before the start takes the SDK's way instead.
ANSWER_TIMEOUT = 2.0


class EngineQueryError(Exception):
    """The engine did not answer a question plainly (the caller asks the SDK instead)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def socket_path(docker_url: str) -> str | None:
    """The Unix socket of ``docker_url`` (``unix:///var/run/docker.sock``), if it is one."""
    if not docker_url.startswith("unix://"):
        return None
    path = docker_url.removeprefix("unix://")
    return path if path.startswith("/") else None


class LocalEngine:
    """Read-only questions to a Docker engine on a Unix socket, on one connection."""

    def __init__(self, path: str, timeout: float = ANSWER_TIMEOUT) -> None:
        self._connection = _UnixConnection(path, timeout)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._connection.close()

    def image(self, name: str) -> dict[str, Any] | None:
        """What ``docker image inspect NAME`` says, or ``None`` if there is no such image."""
        return self._get(f"/images/{quote(name, safe='')}/json")

    def container(self, name_or_id: str) -> dict[str, Any] | None:
        """What ``docker container inspect`` says, or ``None`` if there is no such container."""
        return self._get(f"/containers/{quote(name_or_id, safe='')}/json")

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            self._connection.request("GET", path)
            response = self._connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineQueryError(f"GET {path}: {exc}") from exc
        if response.status == 404:
            return None
        if response.status != 200:
            raise EngineQueryError(f"GET {path}: HTTP {response.status}")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise EngineQueryError(f"GET {path}: not JSON ({exc})") from exc
        if not isinstance(answer, dict):
            raise EngineQueryError(f"GET {path}: not an object")
        return answer


__all__ = ["EngineQueryError", "LocalEngine", "socket_path"]
