"""The errors freshdb raises: one hierarchy, each message saying what to do next."""

from __future__ import annotations


class FreshDBError(Exception):
    """Base class of every error freshdb raises on purpose."""


class ConfigurationError(FreshDBError):
    """A setting is missing, malformed or contradicts another."""


class UnsupportedServerError(ConfigurationError):
    """The server (or its image) is of another engine, or a release freshdb does not run on."""


class DockerUnavailableError(FreshDBError):
    """No Docker engine answered where freshdb looked for one."""


class ImageError(FreshDBError):
    """The server image is missing and could not be pulled, or is unusable."""


class ContainerConflictError(FreshDBError):
    """A container that freshdb did not create stands where freshdb needs one."""


class ServerStartError(FreshDBError):
    """The database server did not become ready."""


class ServerUnavailableError(FreshDBError):
    """The database server stopped answering, or refused the connection."""


class ServerFullError(FreshDBError):
    """The server ran out of a resource: connections or tmpfs space."""


class MigrationError(FreshDBError):
    """Building the template failed: a migration or statement raised an error."""


class SeedError(MigrationError):
    """A snapshot's seed failed: no snapshot was marked complete, the next run seeds again."""


class PoolTimeoutError(FreshDBError):
    """No copy became ready within the acquire timeout."""


class AcquireCancelledError(FreshDBError):
    """Waiting for a copy was called off (the waiting task was cancelled)."""


def one_line(exc: BaseException) -> str:
    """An error's message on one line (its lines joined), or its type's name if empty.

    What goes into another message, a log line or the CLI's one-line reason."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
