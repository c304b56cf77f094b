"""A program in a container wired to this process's terminal (``freshdb shell``).

Like ``docker exec -i`` (and ``-t`` when stdin and stdout are terminals), through
the Docker SDK: no docker CLI and no database client needed on the host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import termios
import threading
import tty
from collections.abc import Mapping, Sequence
from typing import Any, cast

import docker.errors
from docker.models.containers import Container
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

import docker
from freshdb.errors import FreshDBError, one_line


def exec_interactive(
    container: Container, command: Sequence[str], environment: Mapping[str, str]
) -> int:
    """Run ``command`` in the container wired to this process's terminal; its exit code.

    The exec's socket is pumped to and from file descriptors 0, 1 and 2.
    """
    api = cast(docker.DockerClient, container.client).api
    use_tty = os.isatty(0) and os.isatty(1)
    try:
        exec_id = api.exec_create(
            container.id,
            list(command),
            stdin=True,
            tty=use_tty,
            environment=dict(environment),
        )["Id"]
        response = api.exec_start(exec_id, tty=use_tty, socket=True)
    except docker.errors.DockerException as exc:
        raise FreshDBError(
            f"Docker could not run {command[0]} in {container.name}: {one_line(exc)}"
        ) from exc
    # docker-py hands back the socket wrapped in a SocketIO; the pump needs the socket.
    sock = cast(socket.socket, getattr(response, "_sock", response))
    saved_terminal = None
    if use_tty:
        saved_terminal = termios.tcgetattr(0)
        tty.setraw(0)
        _resize_exec(api, exec_id)
        signal.signal(signal.SIGWINCH, lambda *_: _resize_exec(api, exec_id))
    try:
        threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
        _pump_output(sock, raw=use_tty)
    finally:
        if saved_terminal is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved_terminal)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            sock.close()
    # The output ends a moment before Docker marks the exec finished: ask until it does.
    until_finished = Retrying(
        stop=stop_after_delay(5.0),
        wait=wait_fixed(0.05),
        retry=retry_if_result(lambda details: bool(details.get("Running"))),
    )
    try:
        details = until_finished(api.exec_inspect, exec_id)
    except RetryError:
        return 1  # still running, with its output closed: count it as failed
    return int(details.get("ExitCode") or 0)


def _resize_exec(api: Any, exec_id: str) -> None:
    size = os.get_terminal_size(1)
    with contextlib.suppress(docker.errors.DockerException):
        api.exec_resize(exec_id, height=size.lines, width=size.columns)


def _pump_stdin(sock: socket.socket) -> None:
    try:
        while data := os.read(0, 65536):
            sock.sendall(data)
        # End of input: the program in the container sees EOF (e.g. psql < script.sql).
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the exec ended first


def _pump_output(sock: socket.socket, raw: bool) -> None:
    buffer = b""
    while chunk := sock.recv(65536):
        if raw:  # a tty: one stream, no framing
            _write_all(1, chunk)
            continue
        # Without a tty Docker frames output: 1 byte stream, 3 zero bytes, 4-byte length.
        buffer += chunk
        while len(buffer) >= 8:
            length = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + length:
                break
            stream, payload, buffer = buffer[0], buffer[8 : 8 + length], buffer[8 + length :]
            _write_all(2 if stream == 2 else 1, payload)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


__all__ = ["exec_interactive"]
