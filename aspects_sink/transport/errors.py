"""
What can go wrong when talking to ClickHouse, sorted by what the caller should do about it.

:class:`ClickHouseUnavailable` means "try again later" (network, timeouts, an overloaded or
restarting server): the data is fine and must wait. :class:`ClickHouseRejected` means ClickHouse
refused the data or the statement itself: retrying the same rows will fail the same way.
"""


class TransportError(Exception):
    """Base class: a ClickHouse operation failed."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class ClickHouseUnavailable(TransportError):
    """
    ClickHouse cannot take the data now: down, overloaded, or misconfigured (wrong password, missing
    table). The data itself is not at fault, so it waits and is retried; it is never parked.
    """


class ClickHouseRejected(TransportError):
    """ClickHouse refused the statement or the data; retrying the same input fails again."""


# ClickHouse error codes that say nothing about the rows being sent: the server is busy or going
# away, or the connection/schema is misconfigured. Any other server error is a rejection of the data.
RETRIABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        394,  # QUERY_WAS_CANCELLED
        999,  # KEEPER_EXCEPTION
    }
)
MISCONFIGURATION_CODES = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)
