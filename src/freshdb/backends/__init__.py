"""Where a database server runs: a Docker container (sticky or throwaway) or an
existing server given by URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from freshdb.backends.base import RunningServer, ServerBackend
from freshdb.config import Settings
from freshdb.dialects.base import Dialect

if TYPE_CHECKING:
    from freshdb.backends.docker import SupersededRetirer

__all__ = ["RunningServer", "ServerBackend", "backend_for"]


def backend_for(
    settings: Settings, dialect: Dialect, *, retire_superseded: SupersededRetirer | None = None
) -> ServerBackend:
    """The backend for the configured mode.

    ``retire_superseded`` is cleanup's policy for idle sticky containers a sticky
    start supersedes (:func:`freshdb.cleanup.retirement.retire_superseded`); without
    it a start retires none.
    """
    if settings.mode == "external":
        from freshdb.backends.external import ExternalBackend

        return ExternalBackend(settings, dialect)
    if settings.mode == "sticky":
        # Reaches a server found before without loading the Docker SDK when it can.
        from freshdb.backends.recorded import RecordedStickyBackend

        return RecordedStickyBackend(settings, dialect, retire_superseded=retire_superseded)
    from freshdb.backends.docker import DockerBackend

    return DockerBackend(settings, dialect, retire_superseded=retire_superseded)
