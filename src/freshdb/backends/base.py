"""Where a database server runs: the interface every backend implements."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO, Protocol

from freshdb.dialects.base import DBAPIConnection, ServerAddress


@dataclasses.dataclass(frozen=True)
class RunningServer:
    """A server that answers queries, and how freshdb came to have it."""

    address: ServerAddress
    mode: str
    container_id: str | None = None
    container_name: str | None = None
    image: str | None = None
    reused: bool = False
    startup_seconds: float = 0.0
    #: Reached at the address a previous start recorded, without the Docker SDK
    #: (see :mod:`freshdb.backends.recorded`).
    from_record: bool = False

    def describe(self) -> dict[str, Any]:
        """A summary without secrets (for reports and ``stats()``)."""
        return {
            "mode": self.mode,
            "host": self.address.host,
            "port": self.address.port,
            "container": self.container_name,
            "container_id": self.container_id[:12] if self.container_id else None,
            "image": self.image,
            "reused": self.reused,
            "from_record": self.from_record,
            "startup_seconds": round(self.startup_seconds, 3),
        }


class ByteSource(Protocol):
    """Anything with a binary ``read(size)``: what a program in the container reads."""

    def read(self, size: int, /) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """How a program run inside the server's container ended."""

    exit_code: int
    #: The end of what it wrote to stderr.
    stderr: str


#: Runs a program inside the server's container: command, environment, stdin, stdout.
ProgramRunner = Callable[
    [Sequence[str], Mapping[str, str], ByteSource | None, BinaryIO | None], ExecResult
]


class ServerBackend(abc.ABC):
    """Starts (or finds) a server and, where it owns one, stops it."""

    #: The session's own work to do while the server starts (its imports): run once,
    #: by :meth:`begin_meanwhile`, which a backend calls when it has asked for the
    #: server and waits for it to answer, and the session after :meth:`start` returns.
    meanwhile: Callable[[], object] | None = None

    def begin_meanwhile(self) -> None:
        """Run :attr:`meanwhile` if it has not run yet (it is meant to return at once,
        leaving its work to a thread)."""
        work, self.meanwhile = self.meanwhile, None
        if work is not None:
            work()

    @abc.abstractmethod
    def start(self) -> RunningServer:
        """Return a server that answers queries, starting one if needed."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Let go of the server: a throwaway container is removed, others stay."""

    def take_admin_connection(self) -> DBAPIConnection | None:
        """An admin connection the start opened (and checked) already, handed over once
        (the session keeps it as its lease); ``None`` if there is none."""
        return None

    def check_alive(self) -> bool:
        """Whether the server is still there (used to tell a dead server from a bug).

        May raise :class:`~freshdb.DockerUnavailableError` when it cannot tell."""
        return True

    def pause_note(self) -> str | None:
        """If the server is paused (it is there, but answers nothing), what to do about it.

        Said in errors when the server stops answering; ``None`` when not paused or
        when the backend cannot tell."""
        return None

    def run_in_server(
        self,
        command: Sequence[str],
        environment: Mapping[str, str],
        stdin: ByteSource | None = None,
        stdout: BinaryIO | None = None,
    ) -> ExecResult:
        """Run a program inside the server's container, ``stdin`` and stdout streamed.

        Raises :class:`NotImplementedError` where the server runs in no container of
        freshdb's (see :attr:`runs_programs`).
        """
        return self.program_runner()(command, environment, stdin, stdout)

    def program_runner(self) -> ProgramRunner:
        """What :meth:`run_in_server` runs programs with (a backend that can overrides it)."""
        raise NotImplementedError("this server runs in no container of freshdb's")

    @property
    def runs_programs(self) -> bool:
        """Whether :meth:`run_in_server` can run programs next to the server."""
        return False
