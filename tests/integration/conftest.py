"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import freshdb


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
        return freshdb.DatabaseServer(
            engine,
            schema=schema,
            image=image,
            mode="sticky",
            prefix=run_prefix,
            pool_size=pool_size,
            driver=driver,
        )

    return make
