"""``python -m freshdb``: the ``freshdb`` command (see :mod:`freshdb.cli`)."""

from freshdb.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
