"""Helpers of the xAPI tests: the devstack's settings, its statement queue, and raw-table counts."""

from __future__ import annotations

# Fast retries and flushes, so outages heal within a test's patience.
DEVSTACK_SETTINGS = {
    "ASPECTS_ENABLE_PII": True,
    "ASPECTS_SINK_RETRY_BASE_SECONDS": 0.5,
    "ASPECTS_SINK_RETRY_MAX_SECONDS": 2,
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 2,
    "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS": 0.5,
    "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS": 0.5,
}

STATEMENT_COUNTS = """
from aspects_sink.models import XapiStatement
result = {state: XapiStatement.objects.filter(state=state).count() for state in ("pending", "dead")}
"""


def statement_counts(devstack) -> dict:
    """Statements pending and dead in the devstack LMS's queue."""
    return devstack.run_python("lms", STATEMENT_COUNTS)


def wait_until_statements_drained(devstack, timeout: float = 60) -> None:
    devstack.wait_for(
        lambda: statement_counts(devstack)["pending"] == 0, timeout=timeout, interval=0.5, what="no pending statement"
    )


def raw_rows(transport, *, final: bool = False) -> int:
    """Rows of the configured raw table, before or after FINAL."""
    from aspects_sink.sinks.xapi_statements import raw_table

    return transport.command(f"SELECT count() FROM {raw_table().insert_target}{' FINAL' if final else ''}")
