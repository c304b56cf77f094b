"""The notes API against a real Postgres database built by Alembic."""

from __future__ import annotations

import httpx
import pytest


async def test_the_seed_migration_ran(client: httpx.AsyncClient) -> None:
    assert (await client.get("/stats")).json() == {"notebooks": 1, "notes": 0}


async def test_notes_go_into_notebooks(client: httpx.AsyncClient) -> None:
    notebook = (await client.post("/notebooks", json={"name": "work"})).json()
    for title in ("plan", "do", "check"):
        response = await client.post(f"/notebooks/{notebook['id']}/notes", json={"title": title})
        assert response.status_code == 201
    notes = (await client.get(f"/notebooks/{notebook['id']}/notes")).json()
    assert [n["title"] for n in notes] == ["plan", "do", "check"]


async def test_duplicate_notebook_names_conflict(client: httpx.AsyncClient) -> None:
    assert (await client.post("/notebooks", json={"name": "inbox"})).status_code == 409


async def test_unknown_notebook(client: httpx.AsyncClient) -> None:
    response = await client.post("/notebooks/999/notes", json={"title": "lost"})
    assert response.status_code == 404


@pytest.mark.parametrize("n", range(10))
async def test_each_test_sees_only_the_seed(client: httpx.AsyncClient, n: int) -> None:
    assert (await client.get("/stats")).json() == {"notebooks": 1, "notes": 0}
    await client.post("/notebooks", json={"name": f"book {n}"})
    assert (await client.get("/stats")).json()["notebooks"] == 2
