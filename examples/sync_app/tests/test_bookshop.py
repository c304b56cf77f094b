"""The bookshop's tests: each gets a fresh, migrated database from freshdb."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bookshop import service


@pytest.fixture
def session(freshdb_engine: Engine) -> Session:
    with Session(freshdb_engine) as session:
        yield session


def test_a_new_shop_is_empty(session: Session) -> None:
    assert service.count_books(session) == 0


def test_adding_books(session: Session) -> None:
    service.add_book(session, "Ursula K. Le Guin", "The Dispossessed", stock=2)
    service.add_book(session, "Ursula K. Le Guin", "The Lathe of Heaven", stock=0)
    assert service.count_books(session) == 2
    assert service.titles_in_stock(session) == ["The Dispossessed"]


def test_selling_until_out_of_stock(session: Session) -> None:
    book = service.add_book(session, "Italo Calvino", "Invisible Cities", stock=1)
    assert service.sell(session, book.id) == 0
    with pytest.raises(service.OutOfStock):
        service.sell(session, book.id)


@pytest.mark.parametrize("copies", range(1, 21))
def test_every_test_starts_from_an_empty_shop(session: Session, copies: int) -> None:
    assert service.count_books(session) == 0
    service.add_book(session, "Someone", f"Book {copies}", stock=copies)
    assert service.count_books(session) == 1


def test_savepoint_mode_rolls_back_commits(freshdb_session: Session) -> None:
    service.add_book(freshdb_session, "Rolled Back", "Never Seen", stock=1)
    assert service.count_books(freshdb_session) == 1
