"""A function that builds the schema: ``schema=build(connection)``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from freshdb.errors import ConfigurationError
from freshdb.migrators.base import digest

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class CallableMigrator:
    """Calls ``function(connection)``; the fingerprint is its source code or ``key``.

    Pass ``key=`` when the function's behaviour depends on more than its own source
    (files it reads, helpers it calls): change the key to force a new template.
    """

    def __init__(self, function: Callable[[Connection], object], key: str | None = None) -> None:
        self.function = function
        self.key = key
        # A partial or a callable object is named by what it calls or its class (its
        # repr holds a memory address, different in every process).
        target = function.func if isinstance(function, functools.partial) else function
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
        module = getattr(target, "__module__", None) or type(target).__module__
        self.description = f"{module}.{name}()"

    def fingerprint(self) -> str:
        if self.key is not None:
            return digest("callable-key", self.key)
        try:
            source = inspect.getsource(self.function)
        except (OSError, TypeError):
            raise ConfigurationError(
                f"cannot read the source of {self.description} to fingerprint it — pass "
                "CallableMigrator(function, key='v1') and change the key when the schema changes"
            ) from None
        return digest("callable", self.description, source)

    def migrate(self, connection: Connection) -> None:
        self.function(connection)
