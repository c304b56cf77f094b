"""A tiny bookshop on plain sync SQLAlchemy: the example freshdb tests."""
