"""An existing server given by URL (a CI service container, a shared server).

No Docker at all: freshdb only connects, and creates and drops only its own databases.
"""

from __future__ import annotations

import time

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from freshdb.backends.base import RunningServer, ServerBackend
from freshdb.config import Settings
from freshdb.dialects.base import Dialect
from freshdb.errors import FreshDBError, ServerUnavailableError


class ExternalBackend(ServerBackend):
    """A server freshdb did not start and never stops."""

    def __init__(self, settings: Settings, dialect: Dialect) -> None:
        if not settings.url:
            raise FreshDBError("external mode needs url= or FRESHDB_URL")
        self.settings = settings
        self.dialect = dialect
        self.address = dialect.address_from_url(settings.url)

    def start(self) -> RunningServer:
        started = time.perf_counter()
        # A CI service container may still be starting: retry until the deadline.
        Retrying(
            stop=stop_after_delay(self.settings.startup_timeout),
            wait=wait_fixed(0.25),
            retry=retry_if_exception_type(ServerUnavailableError),
            reraise=True,
        )(self.dialect.ping, self.address, timeout=5.0)
        self.dialect.check_supported(
            self.address,
            self.settings.engine,
            f"the server at {self.address.host}:{self.address.port}",
            hint="point FRESHDB_URL / url= at a supported server",
        )
        return RunningServer(
            address=self.address,
            mode="external",
            reused=True,
            startup_seconds=time.perf_counter() - started,
        )

    def stop(self) -> None:
        """Nothing to stop: the server is not freshdb's."""

    def check_alive(self) -> bool:
        try:
            self.dialect.ping(self.address, timeout=2.0)
        except Exception:
            return False
        return True
