"""Where a database server runs: a Docker container (sticky or throwaway) or an
existing server given by URL."""

from __future__ import annotations

from freshdb.backends.base import RunningServer, ServerBackend
from freshdb.config import Settings
from freshdb.dialects.base import Dialect

__all__ = ["RunningServer", "ServerBackend", "backend_for"]


def backend_for(settings: Settings, dialect: Dialect) -> ServerBackend:
    """The backend for the configured mode."""
    if settings.mode == "external":
        from freshdb.backends.external import ExternalBackend

        return ExternalBackend(settings, dialect)
    from freshdb.backends.docker import DockerBackend

    return DockerBackend(settings, dialect)
