"""
Mutations followed to their end. ClickHouse acknowledges ``ALTER TABLE … DELETE`` when it has queued the
mutation, not when the rows are gone; a mutation can fail (``latest_fail_reason``) and be retried by the
server forever. A retirement is acknowledged only once ``system.mutations`` shows its mutations done
(``is_done``): a failing one raises :class:`MutationNotDone` with ClickHouse's reason, and so does one
still running after ``ASPECTS_SINK_RETIREMENT_MUTATION_TIMEOUT_SECONDS``; the drain then retries the
retirement later, as for any rejected batch, and it shows in the sink's health until it succeeds.
"""

from __future__ import annotations

import logging
import time

from aspects_sink.conf import aspects_settings
from aspects_sink.transport import ClickHouseMisconfigured, ClickHouseTransport, TransportError

log = logging.getLogger(__name__)


class MutationNotDone(RuntimeError):
    """A mutation ClickHouse reports failing, or one not done in time; the message names table, id and reason."""


LOCAL_MUTATIONS = "system.mutations"


def _unfinished(mutations_log: str) -> str:
    """The unfinished mutations of a table since a time, as ``mutations_log`` (a table expression) shows them."""
    return (
        f"SELECT mutation_id, latest_fail_reason FROM {mutations_log} "
        "WHERE database = {database:String} AND table = {table:String} AND create_time >= {since:DateTime} "
        "AND NOT is_done ORDER BY create_time"
    )


def run(
    transport: ClickHouseTransport,
    sql: str,
    parameters: dict,
    settings: dict,
    mutates: str,
    *,
    mutations_log: str = LOCAL_MUTATIONS,
) -> None:
    """
    Run a mutation of ``mutates`` (``database.table``) and wait until ``mutations_log`` shows it done: the server's
    ``system.mutations``, or on a cluster every replica's (``clusterAllReplicas``: an ``ON CLUSTER`` mutation runs
    on each, and is done when all are).
    """
    since = transport.rows("SELECT now()")[0][0]
    try:
        transport.command(sql, parameters, settings)
    except TransportError:
        # A server that runs the mutation at once (or ``mutations_sync``) reports its failure here: report it
        # as the mutation's, with ClickHouse's reason, when system.mutations shows it failing. One still running
        # (the client gave up waiting for it) is no failure: the statement's own error says what happened.
        _raise_if_failing(_read(transport, mutations_log, mutates, since)[0], mutates)
        raise
    wait(transport, mutates, since, mutations_log=mutations_log)


def _read(transport: ClickHouseTransport, mutations_log: str, mutates: str, since) -> tuple[list, str]:
    """
    The unfinished mutations ``mutations_log`` shows, and the log read. Every replica's (``clusterAllReplicas``)
    needs ClickHouse's REMOTE grant: without it, the replica the client talks to is read, and a WARNING says so.
    """
    try:
        return transport.rows(_unfinished(mutations_log), _where(mutates, since)), mutations_log
    except ClickHouseMisconfigured as error:
        if mutations_log == LOCAL_MUTATIONS:
            raise
        log.warning(
            "aspects_sink: cannot read every replica's mutations (%s): grant REMOTE to follow them on the whole "
            "cluster; following %s's mutations on this replica only",
            error,
            mutates,
        )
        return transport.rows(_unfinished(LOCAL_MUTATIONS), _where(mutates, since)), LOCAL_MUTATIONS


def _where(mutates: str, since) -> dict:
    database, _, table = mutates.partition(".")
    return {"database": database, "table": table, "since": since}


def _raise_if_failing(unfinished: list, mutates: str) -> None:
    """Raise :class:`MutationNotDone` with ClickHouse's reason when one of these unfinished mutations fails."""
    failing = [(mutation_id, reason) for mutation_id, reason in unfinished if reason]
    if failing:
        mutation_id, reason = failing[0]
        raise MutationNotDone(f"{mutates}: mutation {mutation_id} fails: {reason}")


def wait(
    transport: ClickHouseTransport,
    mutates: str,
    since,
    timeout: float | None = None,
    mutations_log: str = LOCAL_MUTATIONS,
) -> None:
    """Wait for the mutations of ``mutates`` created since ``since``; raise :class:`MutationNotDone`."""
    if timeout is None:
        timeout = float(aspects_settings.ASPECTS_SINK_RETIREMENT_MUTATION_TIMEOUT_SECONDS)
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        unfinished, mutations_log = _read(transport, mutations_log, mutates, since)
        if not unfinished:
            return
        _raise_if_failing(unfinished, mutates)
        if time.monotonic() > deadline:
            ids = ", ".join(mutation_id for mutation_id, _ in unfinished)
            raise MutationNotDone(f"{mutates}: mutations {ids} not done after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
