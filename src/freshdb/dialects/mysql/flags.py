"""MySQL and MariaDB server flags, chosen per flavour and version (pure, unit-tested)."""

from __future__ import annotations

from typing import Literal

from freshdb.dialects import versions

Flavour = Literal["mysql", "mariadb"]


def image_flavour(engine: str, image: str) -> Flavour:
    """Which server an image runs: its name decides, else the configured engine."""
    named = versions.image_flavour(image)
    if named == "mysql" or named == "mariadb":
        return named
    return "mariadb" if engine == "mariadb" else "mysql"


def server_flags(flavour: Flavour, version: tuple[int, ...], max_connections: int) -> list[str]:
    """The server's command-line flags: durability off, nothing a test does not need.

    Data lives on tmpfs and is thrown away, so every flush, doublewrite and binary
    log write is wasted work. Option names and values differ between the flavours
    and across versions; each choice below says which server it is for.
    """
    flags = [
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-log-bin",  # MySQL 8 logs binary by default; MariaDB accepts it too
        "--skip-name-resolve",
        f"--max-connections={max_connections}",
        # A fixed, modest pool: copies are tiny, and a big pool only costs memory.
        "--innodb-buffer-pool-size=128M",
        # The hash index is maintained on every DROP TABLE; tests never benefit from it.
        "--innodb-adaptive-hash-index=OFF",
        # Persistent statistics are rows written on every CREATE TABLE and deleted on
        # every DROP: measured here, a quarter or more of the time of copying 20 tables.
        "--innodb-stats-persistent=OFF",
        "--innodb-stats-auto-recalc=OFF",
    ]
    if flavour == "mariadb":
        # Boolean before 11.x, ENUM (OFF/ON/fast) after: 0 means OFF for both.
        flags.append("--innodb-doublewrite=0")
        if version < (11, 0):
            # Also keeps InnoDB from trying O_DIRECT, which tmpfs does not support.
            flags.append("--innodb-flush-method=nosync")
        # From 11.0 innodb_flush_method is deprecated (and nosync means fsync): leave
        # it alone; InnoDB falls back from O_DIRECT by itself, and fsync is free on tmpfs.
        return flags
    # MySQL: innodb_doublewrite became an ENUM (ON/OFF/DETECT_*) in 8.0.30 and OFF is
    # the documented spelling from 8.0.20 on; older releases take the Boolean 0.
    flags.append("--innodb-doublewrite=OFF" if version >= (8, 0, 20) else "--innodb-doublewrite=0")
    # MySQL has no nosync it supports; O_DIRECT fails on tmpfs and O_DIRECT_NO_FSYNC
    # is unsafe on some file systems. fsync works everywhere and costs nothing on tmpfs.
    flags.append("--innodb-flush-method=fsync")
    # Performance schema is on by default in MySQL (off in MariaDB) and costs ~400 MB.
    flags.append("--performance-schema=OFF")
    if version >= (8, 0, 11):
        # The X protocol plugin (port 33060), on by default since 8.0.11; unused here.
        flags.append("--mysqlx=OFF")
    return flags
