"""Every test gets the app wired to its own fresh, migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from notes.app import app, get_engine


@pytest.fixture
async def client(freshdb_async_engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    app.dependency_overrides[get_engine] = lambda: freshdb_async_engine
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notes") as client:
        yield client
    app.dependency_overrides.clear()
