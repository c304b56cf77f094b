"""A small notes API: FastAPI, async SQLAlchemy and Alembic."""
