"""Just enough of ClickHouse's SQL lexing to route a request, without parsing SQL.

The server must know where an insert's statement ends and its data begins, what format a result is in, and which
words of a statement are keywords rather than text inside quotes or comments. A small lexer that skips quoted
strings and comments answers all three; the engine parses and checks the SQL itself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

_SQL_TOKEN = re.compile(
    rb"""
      (?P<quoted> '(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.)*" | `(?:[^`\\]|\\.)*` )
    | (?P<comment> --[^\n]* | /\*.*?\*/ )
    | (?P<word> [A-Za-z_][A-Za-z0-9_]* )
    | (?P<space> \s+ )
    | (?P<other> . )
    """,
    re.VERBOSE | re.DOTALL,
)
# Statements whose response is a result set. Only those report X-ClickHouse-Format: that is how clients tell a query
# with an empty result from a command.
RESULT_STATEMENTS = frozenset({b"SELECT", b"WITH", b"SHOW", b"DESCRIBE", b"DESC", b"EXPLAIN", b"EXISTS", b"CHECK"})
# After INSERT, these words mean the data is part of the SQL itself or read by the engine, not sent by the client.
INSERT_WITHOUT_CLIENT_DATA = frozenset({b"VALUES", b"SELECT", b"WITH", b"FROM"})


class Word(NamedTuple):
    """A keyword or identifier of a statement, outside quotes and comments; depth counts enclosing parentheses."""

    text: bytes
    start: int
    end: int
    depth: int

    @property
    def keyword(self) -> bytes:
        return self.text.upper()


class Token(NamedTuple):
    """A word, a quoted string or identifier, or a punctuation character: what is left without blanks and comments."""

    kind: str  # "word", "quoted" or "other"
    text: bytes
    start: int
    end: int
    depth: int  # parentheses open before this token

    @property
    def name(self) -> bytes:
        """The identifier this token spells, if any: ClickHouse takes `file` and "file" for file."""
        if self.kind == "quoted" and self.text[:1] in (b"`", b'"'):
            return self.text[1:-1]
        return self.text if self.kind == "word" else b""


def sql_tokens(sql: bytes) -> Iterator[Token]:
    """Yield the tokens of a request lazily, skipping blanks and comments."""
    depth = 0
    for token in _SQL_TOKEN.finditer(sql):
        kind = token.lastgroup
        if kind in ("word", "quoted", "other"):
            yield Token(kind, token.group(), token.start(), token.end(), depth)
        if kind == "other":
            depth += {b"(": 1, b")": -1}.get(token.group(), 0)


def sql_words(sql: bytes) -> Iterator[Word]:
    """Yield the words of a statement, lazily: an insert's data after its FORMAT clause is never scanned."""
    for token in sql_tokens(sql):
        if token.kind == "word":
            yield Word(token.text, token.start, token.end, token.depth)


def statement_keywords(sql: bytes) -> Iterator[bytes]:
    """The first word of each statement of a request, upper-cased: chDB runs all the statements ``;`` separates."""
    at_statement_start = True
    for token in sql_tokens(sql):
        if token.kind == "other" and token.text == b";":
            at_statement_start = True
        elif at_statement_start and token.kind == "word":
            at_statement_start = False
            yield token.text.upper()
        elif at_statement_start and token.text != b"(":  # a statement may start with parentheses: (SELECT 1)
            at_statement_start = False
            yield b""


def _adjacent(sql: bytes, first: Word, second: Word) -> bool:
    return not sql[first.end : second.start].strip()


def _data_start(request: bytes, position: int) -> int:
    """Where an insert's data begins after its format name: past blanks and one line break, as ClickHouse reads it."""
    while request[position : position + 1] in (b" ", b"\t"):
        position += 1
    for line_break in (b"\r\n", b"\n"):
        if request.startswith(line_break, position):
            return position + len(line_break)
    return position


@dataclass(frozen=True)
class InsertWithData:
    """An ``INSERT ... FORMAT X`` statement and the data that followed it in the request."""

    target: str
    settings_clause: str
    data_format: str
    data: bytes

    def reading_from(self, path: str) -> str:
        """The same insert, taking its data from a file: chDB has no request body to read it from."""
        return f"{self.target} FROM INFILE {quote_string(path)}{self.settings_clause} FORMAT {self.data_format}"


def parse_insert_with_data(request: bytes) -> InsertWithData | None:
    """Split ``INSERT INTO t (cols) [SETTINGS ...] FORMAT X <data>``; None for any other statement."""
    words = (word for word in sql_words(request) if word.depth == 0)
    first = next(words, None)
    if first is None or first.keyword != b"INSERT":
        return None
    settings_start = None
    for word in words:
        if word.keyword in INSERT_WITHOUT_CLIENT_DATA:
            return None
        if word.keyword == b"SETTINGS" and settings_start is None:
            settings_start = word.start
        elif word.keyword == b"FORMAT":
            format_name = next(words, None)
            if format_name is None or not _adjacent(request, word, format_name):
                return None
            head_end = word.start if settings_start is None else settings_start
            return InsertWithData(
                target=request[:head_end].decode().rstrip(),
                settings_clause=" " + request[head_end : word.start].decode().strip() if settings_start else "",
                data_format=format_name.text.decode(),
                data=request[_data_start(request, format_name.end) :],
            )
    return None


def output_format(sql: bytes, default_format: str) -> str:
    """The format of a statement's result: its own ``FORMAT`` clause, else the request's default."""
    words = [word for word in sql_words(sql) if word.depth == 0]
    chosen = default_format
    for word, following in itertools.pairwise(words):
        if word.keyword == b"FORMAT" and _adjacent(sql, word, following):
            chosen = following.text.decode()
    return chosen


def returns_result_set(sql: bytes) -> bool:
    first = next(sql_words(sql), None)
    return first is not None and first.keyword in RESULT_STATEMENTS


def quote_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def quote_identifier(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("`", "\\`")
    return f"`{escaped}`"
