"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import freshdb


def sticky_server(engine: str, image: str, prefix: str, **options: Any) -> freshdb.DatabaseServer:
    """A sticky server of ``prefix`` (in tests, this run's); ``options`` go to
    :class:`freshdb.DatabaseServer` as they are."""
    return freshdb.DatabaseServer(engine, image=image, mode="sticky", prefix=prefix, **options)


@pytest.fixture
def sticky_family_server(
    run_prefix: str, postgres_image: str, mysql_family: Any
) -> Callable[..., freshdb.DatabaseServer]:
    """Makes (does not start) a sticky server of this run for a family and a driver.

    ``"postgres"`` is the Postgres image under test; any other family is the
    MySQL-family server under test.
    """

    def make(family: str, driver: str, *, schema: Any, pool_size: int) -> freshdb.DatabaseServer:
        engine, image = (
            ("postgres", postgres_image)
            if family == "postgres"
            else (mysql_family.engine, mysql_family.image)
        )
        return sticky_server(
            engine, image, run_prefix, schema=schema, pool_size=pool_size, driver=driver
        )

    return make
