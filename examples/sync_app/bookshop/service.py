"""The bookshop's logic: plain functions over a SQLAlchemy Session."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bookshop.models import Author, Book


class OutOfStock(Exception):
    """Raised when a book cannot be sold."""


def add_book(session: Session, author_name: str, title: str, stock: int = 0) -> Book:
    """Add a book, creating its author on first use."""
    author = session.scalar(select(Author).where(Author.name == author_name))
    if author is None:
        author = Author(name=author_name)
        session.add(author)
    book = Book(title=title, stock=stock, author=author)
    session.add(book)
    session.commit()
    return book


def sell(session: Session, book_id: int, quantity: int = 1) -> int:
    """Sell copies of a book; returns what is left in stock."""
    book = session.get(Book, book_id, with_for_update=True)
    if book is None or book.stock < quantity:
        raise OutOfStock(book_id)
    book.stock -= quantity
    session.commit()
    return book.stock


def titles_in_stock(session: Session) -> list[str]:
    """Titles with at least one copy left, alphabetically."""
    return list(session.scalars(select(Book.title).where(Book.stock > 0).order_by(Book.title)))


def count_books(session: Session) -> int:
    """How many books the shop lists."""
    return session.scalar(select(func.count()).select_from(Book)) or 0
