"""What the server refuses to run, although chDB would: it serves a developer's machine, not a sandbox.

The checks read the statement with the endpoint's lexer, so a word inside a string literal or a comment never
counts.
"""

from __future__ import annotations

from .errors import ClickHouseError
from .sql import RESULT_STATEMENTS, statement_keywords

# What ClickHouse lets a GET request run (it sets readonly=2 for them): reading, and changing settings.
READ_ONLY_STATEMENTS = RESULT_STATEMENTS | {b"SET", b"USE"}


def check_read_only(sql: bytes) -> None:
    """Refuse anything but reading over GET, as ClickHouse does: a link or a crawler must not change data."""
    for keyword in statement_keywords(sql):
        if keyword not in READ_ONLY_STATEMENTS:
            # ClickHouse's HTTP handler gives READONLY no status of its own, hence its default, 500.
            raise ClickHouseError.of(
                164,
                "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries",
            )
