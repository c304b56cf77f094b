"""Plain ``.sql`` files: a file, or a directory of them applied in name order."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from freshdb.errors import ConfigurationError, MigrationError
from freshdb.migrators.base import digest

_DELIMITER_LINE = re.compile(r"DELIMITER[ \t]+(\S+)[ \t]*(?=\n|$)", re.IGNORECASE)
_DOLLAR_TAG = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*\$|\$\$")


@dataclasses.dataclass(frozen=True)
class Statement:
    """One SQL statement of a file, and the line it starts on."""

    sql: str
    line: int


def split_statements(text: str) -> Iterator[Statement]:
    """Split SQL text into statements at top-level delimiters.

    Understands quoted strings and identifiers, dollar quotes (Postgres function
    bodies), ``--`` and ``/* */`` comments, and the ``DELIMITER`` directive of the
    mysql client (for MySQL routines and triggers).
    """
    delimiter = ";"
    i, start, line, start_line = 0, 0, 1, 1
    length = len(text)

    def flush(end: int) -> Statement | None:
        body = text[start:end].strip()
        if not body or not _has_code(body):
            return None
        return Statement(body, start_line)

    while i < length:
        char = text[i]
        if char == "\n":
            line += 1
        if text[start:i].strip() == "" and char not in " \t\r\n":
            start_line = line
            directive = _DELIMITER_LINE.match(text, i)
            if directive:
                delimiter = directive.group(1)
                i = directive.end()
                start = i
                continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = length if end == -1 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = length if end == -1 else end + 2
            line += text.count("\n", i, end)
            i = end
            continue
        if char in "'\"`":
            end = _end_of_quote(text, i, char)
            line += text.count("\n", i, end)
            i = end
            continue
        if char == "$":
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                close = text.find(tag.group(0), tag.end())
                end = length if close == -1 else close + len(tag.group(0))
                line += text.count("\n", i, end)
                i = end
                continue
        if text.startswith(delimiter, i):
            statement = flush(i)
            if statement:
                yield statement
            i += len(delimiter)
            start = i
            continue
        i += 1
    statement = flush(length)
    if statement:
        yield statement


def _end_of_quote(text: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(text):
        if text[j] == "\\" and quote == "'":
            j += 2
            continue
        if text[j] == quote:
            if text.startswith(quote * 2, j):
                j += 2
                continue
            return j + 1
        j += 1
    return len(text)


def _has_code(body: str) -> bool:
    without_comments = re.sub(r"/\*.*?\*/", "", body, flags=re.DOTALL)
    without_comments = re.sub(r"--[^\n]*", "", without_comments)
    return bool(without_comments.strip())


class SqlMigrator:
    """Runs ``.sql`` files statement by statement; the fingerprint is their contents."""

    def __init__(self, *paths: str | Path) -> None:
        if not paths:
            raise ConfigurationError("SqlMigrator needs at least one .sql file or directory")
        self.paths = [Path(p) for p in paths]
        self.description = "SQL " + ", ".join(str(p) for p in self.paths)

    def files(self) -> list[Path]:
        """The files to run, in order: each path's files sorted by name."""
        found: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix == ".sql" and p.is_file())
                if not files:
                    raise ConfigurationError(f"no .sql files in schema directory {path}")
                found.extend(files)
            elif path.is_file():
                found.append(path)
            else:
                raise ConfigurationError(
                    f"schema path {path} does not exist — give a .sql file, a directory of "
                    ".sql files, or fix the path (relative paths start at the working directory)"
                )
        return found

    def fingerprint(self) -> str:
        parts: list[str | bytes] = ["sql"]
        for file in self.files():
            parts += [file.name, file.read_bytes()]
        return digest(*parts)

    def migrate(self, connection: Connection) -> None:
        for file in self.files():
            run_statements(connection, split_statements(file.read_text()), source=str(file))


def run_statements(
    connection: Connection, statements: Iterator[Statement] | Sequence[Statement], source: str
) -> None:
    """Execute statements one by one; a failure names the file, line and statement."""
    for number, statement in enumerate(statements, start=1):
        try:
            connection.exec_driver_sql(statement.sql, execution_options={"no_parameters": True})
        except DBAPIError as exc:
            snippet = " ".join(statement.sql.split())
            if len(snippet) > 300:
                snippet = snippet[:297] + "..."
            raise MigrationError(
                f"{source}, statement {number} (line {statement.line}) failed: "
                f"{str(exc.orig).strip()}\n    {snippet}"
            ) from exc
