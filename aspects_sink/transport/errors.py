"""
What can go wrong when talking to ClickHouse, sorted by what the caller should do about it.

Three classes, decided by ClickHouse's error code (clickhouse-connect's ``code`` attribute, else the
``Code: N`` of the message, as chDB words it):

* :class:`ClickHouseUnavailable`: "try again later" (network, timeouts, an overloaded, restarting or
  read-only server). The data is fine and waits, with jittered backoff; it never counts as a failed try.
* :class:`ClickHouseMisconfigured`: the table, a column, the database, the user or a grant is wrong. A
  person must fix it; the sink pauses as a whole, loudly, and resumes by itself once it works. It is a
  kind of unavailability (the data is not at fault: nothing is parked), so callers that only wait treat
  both alike.
* :class:`ClickHouseRejected`: ClickHouse refused the data itself; retrying the same rows fails the same
  way, so the objects at fault are isolated and finally parked.
"""


class TransportError(Exception):
    """Base class: a ClickHouse operation failed."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class ClickHouseUnavailable(TransportError):
    """ClickHouse cannot take the data now (down, overloaded, misconfigured): the data waits, never parked."""


class ClickHouseMisconfigured(ClickHouseUnavailable):
    """
    The connection or the schema is wrong (unknown table, column or database, bad credentials, a missing
    grant): nothing gets through until someone fixes it, so the sink pauses instead of retrying per batch.
    """


class ClickHouseRejected(TransportError):
    """ClickHouse refused the statement or the data; retrying the same input fails again."""


# ClickHouse error codes (src/Common/ErrorCodes.cpp) that say nothing about the rows being sent: the
# server is busy, short of memory or disk, going away, or the connection broke. Never the data's fault.
UNAVAILABLE_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        173,  # CANNOT_ALLOCATE_MEMORY
        201,  # QUOTA_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        218,  # TABLE_IS_DROPPED (a table being dropped and made again: the schema command, a migration)
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        289,  # REPLICA_IS_NOT_IN_QUORUM
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        473,  # DEADLOCK_AVOIDED (a lock not had in time)
        517,  # CANNOT_ASSIGN_ALTER (another ALTER in the way)
        574,  # DISTRIBUTED_TOO_MANY_PENDING_BYTES (a Distributed table's queue to its shards full)
        745,  # SERVER_OVERLOADED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)
# Codes that mean the schema, the database, the user or the grants are not what the plugin needs.
CONFIGURATION_CODES = frozenset(
    {
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        47,  # UNKNOWN_IDENTIFIER
        48,  # NOT_IMPLEMENTED (a mutation on an engine that has none: the table is not what the plugin made)
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        164,  # READONLY (the user's profile forbids writes)
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        195,  # IP_ADDRESS_NOT_ALLOWED
        291,  # DATABASE_ACCESS_DENIED
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        701,  # CLUSTER_DOESNT_EXIST (ASPECTS_SINK_CLUSTER names a cluster the server does not know)
    }
)
