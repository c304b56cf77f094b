"""Programs run inside a server's container through the Docker SDK's exec API.

Two ways, sharing how an exec is started, how Docker frames its output and how its
exit code is read: :func:`exec_interactive` wires the program to this process's
terminal (``freshdb shell``, like ``docker exec -it``), and :func:`exec_streaming`
streams bytes in and out (a template cache's dump and restore). No docker CLI and no
database client is needed on the host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import termios
import threading
import tty
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, cast

import docker.errors
from docker.models.containers import Container
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

import docker
from freshdb.backends.base import ByteSource, ExecResult
from freshdb.errors import FreshDBError, one_line

#: How much of a program's stderr is kept for the error message.
_STDERR_KEPT = 64 * 1024


def exec_interactive(
    container: Container, command: Sequence[str], environment: Mapping[str, str]
) -> int:
    """Run ``command`` in the container wired to this process's terminal; its exit code.

    The exec's socket is pumped to and from file descriptors 0, 1 and 2.
    """
    api = cast(docker.DockerClient, container.client).api
    use_tty = os.isatty(0) and os.isatty(1)
    exec_id, sock = _start_exec(container, command, environment, stdin=True, tty_=use_tty)
    saved_terminal = None
    if use_tty:
        saved_terminal = termios.tcgetattr(0)
        tty.setraw(0)
        _resize_exec(api, exec_id)
        signal.signal(signal.SIGWINCH, lambda *_: _resize_exec(api, exec_id))
    try:
        threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
        if use_tty:  # a tty: one stream, no framing
            while chunk := sock.recv(65536):
                _write_all(1, chunk)
        else:
            for stream, payload in _frames(sock):
                _write_all(2 if stream == 2 else 1, payload)
    finally:
        if saved_terminal is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved_terminal)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            sock.close()
    exit_code = _exit_code(api, exec_id, within=5.0)
    return 1 if exit_code is None else exit_code


def exec_streaming(
    container: Container,
    command: Sequence[str],
    environment: Mapping[str, str],
    stdin: ByteSource | None = None,
    stdout: BinaryIO | None = None,
) -> ExecResult:
    """Run ``command`` in the container, ``stdin`` streamed in and stdout streamed out.

    For data of any size (a dump, a restore): nothing is held in memory but a
    chunk, and the end of stderr for the error message.
    """
    api = cast(docker.DockerClient, container.client).api
    exec_id, sock = _start_exec(container, command, environment, stdin=stdin is not None)
    errors = bytearray()
    try:
        if stdin is not None:
            threading.Thread(
                target=_pump_file, args=(stdin, sock), name="freshdb-exec-stdin", daemon=True
            ).start()
        for stream, payload in _frames(sock):
            if stream == 2:
                errors += payload
                del errors[:-_STDERR_KEPT]
            elif stdout is not None:
                stdout.write(payload)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    text = errors.decode(errors="replace")
    exit_code = _exit_code(api, exec_id, within=10.0)
    if exit_code is None:
        return ExecResult(1, text + "\n(the command did not end)")
    return ExecResult(exit_code, text)


def _start_exec(
    container: Container,
    command: Sequence[str],
    environment: Mapping[str, str],
    stdin: bool,
    tty_: bool = False,
) -> tuple[str, socket.socket]:
    api = cast(docker.DockerClient, container.client).api
    try:
        exec_id = str(
            api.exec_create(
                container.id,
                list(command),
                stdin=stdin,
                tty=tty_,
                environment=dict(environment),
            )["Id"]
        )
        response = api.exec_start(exec_id, tty=tty_, socket=True)
    except docker.errors.DockerException as exc:
        raise FreshDBError(
            f"Docker could not run {command[0]} in {container.name}: {one_line(exc)}"
        ) from exc
    # docker-py hands back the socket wrapped in a SocketIO; the pumps need the socket.
    return exec_id, cast(socket.socket, getattr(response, "_sock", response))


def _exit_code(api: Any, exec_id: str, within: float) -> int | None:
    """The exec's exit code; ``None`` if it is still running after ``within`` seconds."""
    # The output ends a moment before Docker marks the exec finished: ask until it does.
    until_finished = Retrying(
        stop=stop_after_delay(within),
        wait=wait_fixed(0.05),
        retry=retry_if_result(lambda details: bool(details.get("Running"))),
    )
    try:
        details = until_finished(api.exec_inspect, exec_id)
    except RetryError:
        return None
    return int(details.get("ExitCode") or 0)


def _frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """Docker's framing of a non-tty exec: 1 byte stream, 3 zero bytes, 4-byte length."""
    buffer = b""
    while chunk := sock.recv(1 << 20):
        buffer += chunk
        while len(buffer) >= 8:
            length = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + length:
                break
            yield buffer[0], buffer[8 : 8 + length]
            buffer = buffer[8 + length :]


def _pump(read: Callable[[], bytes], sock: socket.socket) -> None:
    """Send what ``read`` gives until it gives nothing, then end the program's input."""
    try:
        while data := read():
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the program sees EOF (e.g. psql < script.sql)
    except (OSError, ValueError):
        pass  # the program ended first (its exit code says how)


def _pump_stdin(sock: socket.socket) -> None:
    _pump(lambda: os.read(0, 65536), sock)


def _pump_file(source: ByteSource, sock: socket.socket) -> None:
    _pump(lambda: source.read(1 << 20), sock)


def _resize_exec(api: Any, exec_id: str) -> None:
    size = os.get_terminal_size(1)
    with contextlib.suppress(docker.errors.DockerException):
        api.exec_resize(exec_id, height=size.lines, width=size.columns)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


__all__ = ["exec_interactive", "exec_streaming"]
