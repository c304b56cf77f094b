"""The HTTP API. The database engine comes from a dependency, so tests can swap it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from notes.models import Note, Notebook

app = FastAPI(title="notes")


@lru_cache
def get_engine() -> AsyncEngine:
    """The application's engine (tests override this dependency)."""
    return create_async_engine(os.environ.get("NOTES_DATABASE_URL", "postgresql+psycopg:///notes"))


async def get_session(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> AsyncIterator[AsyncSession]:
    """One session per request."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


class NotebookIn(BaseModel):
    name: str


class NoteIn(BaseModel):
    title: str
    body: str = ""


@app.post("/notebooks", status_code=201)
async def create_notebook(data: NotebookIn, session: SessionDep) -> dict:
    notebook = Notebook(name=data.name)
    session.add(notebook)
    try:
        await session.commit()
    except IntegrityError:
        raise HTTPException(409, f"notebook {data.name!r} exists") from None
    return {"id": notebook.id, "name": notebook.name}


@app.post("/notebooks/{notebook_id}/notes", status_code=201)
async def add_note(notebook_id: int, data: NoteIn, session: SessionDep) -> dict:
    if await session.get(Notebook, notebook_id) is None:
        raise HTTPException(404, "no such notebook")
    note = Note(notebook_id=notebook_id, title=data.title, body=data.body)
    session.add(note)
    await session.commit()
    return {"id": note.id, "title": note.title}


@app.get("/notebooks/{notebook_id}/notes")
async def list_notes(notebook_id: int, session: SessionDep) -> list[dict]:
    rows = await session.scalars(
        select(Note).where(Note.notebook_id == notebook_id).order_by(Note.id)
    )
    return [{"id": n.id, "title": n.title, "body": n.body} for n in rows]


@app.get("/stats")
async def stats(session: SessionDep) -> dict:
    return {
        "notebooks": await session.scalar(select(func.count()).select_from(Notebook)),
        "notes": await session.scalar(select(func.count()).select_from(Note)),
    }
