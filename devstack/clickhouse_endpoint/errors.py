"""ClickHouse's error shape, in one place: clients build their exceptions from its code and text alone.

Every module of the endpoint raises :class:`ClickHouseError`, and only the HTTP handler turns it into a response,
so each refusal looks to a client exactly like the one a real ClickHouse server would send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: a numeric code and a ``Code: N. DB::Exception: ... (NAME)`` text.

    Clients such as clickhouse-connect build their exceptions from exactly these two things.
    """

    # ClickHouse answers most errors with 500; these get the status its HTTP handler gives them.
    HTTP_STATUS_BY_CODE: Mapping[int, int] = {
        36: 400,  # BAD_ARGUMENTS
        62: 400,  # SYNTAX_ERROR
        60: 404,  # UNKNOWN_TABLE
        81: 404,  # UNKNOWN_DATABASE
        48: 501,  # NOT_IMPLEMENTED
        516: 403,  # AUTHENTICATION_FAILED
        497: 403,  # ACCESS_DENIED
        78: 404,  # UNKNOWN_TYPE_OF_QUERY
    }
    _CODE_IN_TEXT = re.compile(r"Code: (\d+)\.")

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code

    @classmethod
    def of(cls, code: int, name: str, message: str) -> ClickHouseError:
        """Build an error raised by this server itself, worded the way ClickHouse words its own."""
        return cls(code, f"Code: {code}. DB::Exception: {message} ({name})")

    @classmethod
    def from_engine(cls, error: Exception) -> ClickHouseError:
        """Wrap a chDB error, whose message already is ClickHouse's error text."""
        text = str(error).strip()
        match = cls._CODE_IN_TEXT.search(text)
        if match is None:
            return cls.of(1001, "STD_EXCEPTION", text)
        return cls(int(match.group(1)), text[match.start() :])

    @property
    def http_status(self) -> int:
        return self.HTTP_STATUS_BY_CODE.get(self.code, 500)


def authentication_failed(user: str) -> ClickHouseError:
    return ClickHouseError.of(
        516,
        "AUTHENTICATION_FAILED",
        f"{user}: Authentication failed: password is incorrect, or there is no user with such name.",
    )
