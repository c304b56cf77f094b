"""Django integration: ``TEST_RUNNER = "freshdb.django.TestRunner"`` and pytest-django.

The runner (:mod:`freshdb.django.runner`) and the pytest-django integration
(:mod:`freshdb.django.pytest_integration`, enabled by ``freshdb_django = true``)
share :class:`~freshdb.django.databases.TestDatabases`: every alias's test database
is a copy of a template built by ``migrate`` once and reused while the migrations
are unchanged. Django is imported only when one of them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from freshdb.django.runner import TestRunner

__all__ = ["TestRunner"]


def __getattr__(name: str) -> Any:
    # Django resolves TEST_RUNNER with getattr(module, "TestRunner"): import it then,
    # so importing freshdb.django (e.g. from the pytest plugin) needs no Django.
    if name == "TestRunner":
        from freshdb.django.runner import TestRunner

        return TestRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
