"""Splitting SQL text into statements where ``psql`` and the ``mysql`` client split it.

Pure text work, no connection: :mod:`freshdb.migrators.sql` runs what this yields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Literal

SqlFamily = Literal["postgres", "mysql"]

_WORD = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_DELIMITER_DIRECTIVE = re.compile(r"delimiter(?=[ \t\r\n]|$)[ \t]*([^ \t\r\n]*)[^\n]*", re.I)
_META_COMMAND = re.compile(r"\\([A-Za-z!?]*)[^\n]*")
# psql meta-commands that change nothing for a migration run statement by statement
# that stops at the first error; pg_dump writes \restrict and \unrestrict.
_HARMLESS_META_COMMANDS = re.compile(
    r"\\(?:restrict|unrestrict)\b[^\n]*|\\set[ \t]+ON_ERROR_STOP\b[^\n]*", re.I
)
_COPY_FROM_STDIN = re.compile(r"COPY\b.*\bFROM\s+STDIN\b", re.I | re.S)
_ROUTINE_START = (("create", "function"), ("create", "procedure"))
_ROUTINE_START_OR_REPLACE = (
    ("create", "or", "replace", "function"),
    ("create", "or", "replace", "procedure"),
)


@dataclasses.dataclass(frozen=True)
class Statement:
    """One SQL statement of a file, and the line its code starts on.

    ``copy_data`` is the inline data of a ``COPY … FROM stdin`` (the lines up to
    ``\\.``, as pg_dump writes them), or None.
    """

    sql: str
    line: int
    copy_data: str | None = None


class SqlSplitError(ValueError):
    """SQL text that a client would not run: an unterminated string, comment or body."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def split_statements(text: str, family: SqlFamily = "postgres") -> Iterator[Statement]:
    """Split SQL text into statements where ``psql`` (or the ``mysql`` client) would.

    Both families: ``'…'`` strings with doubled quotes, quoted identifiers, ``--`` and
    ``/* */`` comments. ``postgres``: standard-conforming strings (``'\\'`` is a whole
    string), ``E'…'`` strings with backslash escapes, dollar quotes (``$$``,
    ``$tag$``), nested comments, no split inside parentheses or the ``BEGIN ATOMIC …
    END`` body of a function or procedure. ``mysql``: backslash escapes in ``'…'`` and
    ``"…"``, `````…````` identifiers, ``#`` comments, ``/*! … */`` executable
    comments, and the client's ``DELIMITER`` directive for routines and triggers.

    Raises :class:`SqlSplitError` for text that never ends (an unterminated string,
    dollar quote or comment) and for psql meta-commands, which are not SQL.
    """
    return StatementSplitter(text, family).statements()


class StatementSplitter:
    """One lazy pass over SQL text; the statement under way is ``text[start:i]``.

    :attr:`backslash_escapes` says whether ``'…'`` strings take backslash escapes
    (Postgres with ``standard_conforming_strings`` off; MySQL unless ``sql_mode`` has
    ``NO_BACKSLASH_ESCAPES``). Like the clients, which follow the server's state, the
    caller may change it between statements: the next statement is read only when
    asked for.
    """

    def __init__(self, text: str, family: SqlFamily) -> None:
        self.text = text
        self.postgres = family == "postgres"
        self.backslash_escapes = not self.postgres
        self.delimiter = ";"
        self.i = 0
        self.line = 1
        self._new_statement()

    def _new_statement(self) -> None:
        self.start: int | None = None  # where the statement's code begins
        self.start_line = self.line
        self.parentheses = 0
        self.routine_words: list[str] = []
        self.block_depth = 0  # BEGIN [ATOMIC] ... END (and CASE ... END inside it)

    def _code_here(self) -> None:
        if self.start is None:
            self.start = self.i
            self.start_line = self.line

    def _skip_to(self, end: int) -> None:
        self.line += self.text.count("\n", self.i, end)
        self.i = end

    def statements(self) -> Iterator[Statement]:
        """The statements, each read when asked for."""
        text, length = self.text, len(self.text)
        while self.i < length:
            char = text[self.i]
            if char in " \t\r\n\f":
                self.line += char == "\n"
                self.i += 1
            elif (self.start is None and self._directive()) or self._comment():
                continue
            elif self._at_delimiter():
                statement = self._finish(self.i)
                self.i += len(self.delimiter)
                if statement and self.postgres and _COPY_FROM_STDIN.match(statement.sql):
                    statement = dataclasses.replace(statement, copy_data=self._copy_data())
                if statement:
                    yield statement
            elif char in "'\"`" or (char == "$" and self.postgres):
                self._code_here()
                self._quoted()
            elif self.postgres and _WORD.match(text, self.i):
                self._code_here()
                self._word()
            else:
                self._code_here()
                if self.postgres and char == "(":
                    self.parentheses += 1
                elif self.postgres and char == ")":
                    self.parentheses = max(0, self.parentheses - 1)
                self.i += 1
        statement = self._finish(length)
        if statement:
            yield statement

    def _finish(self, end: int) -> Statement | None:
        statement = None
        if self.start is not None:
            statement = Statement(self.text[self.start : end].strip(), self.start_line)
        self._new_statement()
        return statement

    def _copy_data(self) -> str:
        """The lines after a COPY ... FROM stdin up to the line ``\\.``, as psql reads them."""
        text, start_line = self.text, self.line
        end_of_line = text.find("\n", self.i)
        self._skip_to(len(text) if end_of_line == -1 else end_of_line + 1)
        start = self.i
        while self.i < len(text):
            end_of_line = text.find("\n", self.i)
            line_end = len(text) if end_of_line == -1 else end_of_line
            if text[self.i : line_end].rstrip("\r") == "\\.":
                data = text[start : self.i]
                self._skip_to(line_end)
                return data
            self._skip_to(line_end if end_of_line == -1 else line_end + 1)
        raise SqlSplitError("COPY ... FROM stdin data does not end with a line \\.", start_line)

    def _at_delimiter(self) -> bool:
        if not self.text.startswith(self.delimiter, self.i):
            return False
        # psql sends nothing while a parenthesis or a routine body is open.
        return not self.postgres or (self.parentheses == 0 and self.block_depth == 0)

    def _directive(self) -> bool:
        """Client commands at the start of a statement: mysql's DELIMITER, psql's \\x."""
        text = self.text
        if not self.postgres:
            directive = _DELIMITER_DIRECTIVE.match(text, self.i)
            if directive is None:
                return False
            if not directive.group(1):
                raise SqlSplitError(
                    "DELIMITER must be followed by the new delimiter (e.g. DELIMITER //)",
                    self.line,
                )
            self.delimiter = directive.group(1)
            self.i = directive.end()
            return True
        if text[self.i] != "\\":
            return False
        harmless = _HARMLESS_META_COMMANDS.match(text, self.i)
        if harmless:
            self.i = harmless.end()
            return True
        command = _META_COMMAND.match(text, self.i)
        shown = command.group(0).strip() if command else "\\"
        raise SqlSplitError(
            f"psql meta-command {shown!r} is not SQL and cannot run here — remove it, or "
            "build this part of the schema with a callable schema (schema=callable(conn))",
            self.line,
        )

    def _comment(self) -> bool:
        text, i = self.text, self.i
        line_comment = text.startswith("--", i) and (
            self.postgres or i + 2 >= len(text) or text[i + 2] in " \t\r\n\f"
        )
        if line_comment or (text[i] == "#" and not self.postgres):
            end = text.find("\n", i)
            self.i = len(text) if end == -1 else end
            return True
        if not text.startswith("/*", i):
            return False
        if not self.postgres and text.startswith(("/*!", "/*M!"), i):
            # An executable comment: the mysql client sends it, the server runs it.
            self._code_here()
        close = self._end_of_block_comment(i)
        if close is None:
            raise SqlSplitError("unterminated /* comment", self.line)
        self._skip_to(close)
        return True

    def _end_of_block_comment(self, i: int) -> int | None:
        text = self.text
        if not self.postgres:  # MySQL comments do not nest
            close = text.find("*/", i + 2)
            return None if close == -1 else close + 2
        depth, j = 0, i
        while j < len(text):
            if text.startswith("/*", j):
                depth += 1
                j += 2
            elif text.startswith("*/", j):
                depth -= 1
                j += 2
                if depth == 0:
                    return j
            else:
                j += 1
        return None

    def _quoted(self) -> None:
        text, i = self.text, self.i
        char = text[i]
        if char == "$":
            tag = _DOLLAR_TAG.match(text, i)
            if tag is None:  # $1 and the like: a parameter, not a quote
                self.i += 1
                return
            close = text.find(tag.group(0), tag.end())
            if close == -1:
                raise SqlSplitError(f"unterminated dollar-quoted string {tag.group(0)}", self.line)
            self._skip_to(close + len(tag.group(0)))
            return
        # Postgres "…" is an identifier; MySQL's "…" is a string like '…'.
        backslashes = self.backslash_escapes and (
            char == "'" or (char == '"' and not self.postgres)
        )
        end = _end_of_quote(text, i, char, backslashes)
        if end is None:
            kind = "identifier" if char == "`" or (char == '"' and self.postgres) else "string"
            raise SqlSplitError(f"unterminated quoted {kind} starting with {char}", self.line)
        self._skip_to(end)

    def _word(self) -> None:
        """A keyword or identifier: E'' strings, and BEGIN ... END of routine bodies."""
        text = self.text
        match = _WORD.match(text, self.i)
        assert match is not None
        word = match.group(0).lower()
        self.i = match.end()
        if word == "e" and text.startswith("'", self.i):
            end = _end_of_quote(text, self.i, "'", backslashes=True)
            if end is None:
                raise SqlSplitError("unterminated E'' string", self.line)
            self._skip_to(end)
            return
        if len(self.routine_words) < 4:
            self.routine_words.append(word)
        if self.parentheses or not self._in_routine_definition():
            return
        if word == "begin":
            self.block_depth += 1
        elif word == "case" and self.block_depth:
            self.block_depth += 1  # CASE ... END inside a body
        elif word == "end" and self.block_depth:
            self.block_depth -= 1

    def _in_routine_definition(self) -> bool:
        words = tuple(self.routine_words)
        return words[:2] in _ROUTINE_START or words[:4] in _ROUTINE_START_OR_REPLACE


def _end_of_quote(text: str, i: int, quote: str, backslashes: bool) -> int | None:
    """Index just past the quote opened at ``i`` (doubled quotes stay inside)."""
    j = i + 1
    length = len(text)
    while j < length:
        char = text[j]
        if backslashes and char == "\\":
            j += 2
            continue
        if char == quote:
            if j + 1 < length and text[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return None
