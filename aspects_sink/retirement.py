"""
Retirement that converges (docs/decisions/0008-retirement-that-converges.rst).

Every path that writes personal data reads recorded retired users (:class:`~aspects_sink.models.RetiredUser`)
out of its batch. A batch can still have read a learner just before the retirement committed and insert
after the retirement's mutations ran. So after every INSERT, the drains and the backfill look at what they
wrote: rows of recorded retired users that carry personal data (any row of a table that deletes retired
users' rows; a non-empty personal column elsewhere) mean the retirement raced; the users are queued for
retirement again, and its mutations, issued after that INSERT, remove the rows. If the record committed
only after this look, its own retirement entry is drained after the commit, hence after the INSERT too.
Either way nobody has to act. ``aspects_sink_retirement_check`` proves it table by table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from aspects_sink import edx_platform, outbox, toggles
from aspects_sink.models import RetiredUser, retired_user_ids
from aspects_sink.sinks import schema
from aspects_sink.sinks.base import Sink, Statement, TableSpec
from aspects_sink.sinks.registry import all_sinks
from aspects_sink.sinks.xapi_statements import forget_parked_events_of, raw_table
from aspects_sink.transport import ClickHouseTransport, ColumnBatch

log = logging.getLogger(__name__)

RETIREMENT_SINK = "user_retirement"


def record(user_ids: Iterable[int]) -> None:
    """
    Record users as retired, in the caller's transaction, and queue the removal of their data; their parked
    tracking events leave the LMS at once.

    The record is written whether or not the retirement sink is on: the exclusion never depends on a switch.
    """
    ids = sorted({int(user_id) for user_id in user_ids})
    known = retired_user_ids(ids)
    new = [RetiredUser(user_id=user_id) for user_id in ids if user_id not in known]
    RetiredUser.objects.bulk_create(new, ignore_conflicts=True)  # another process may record the same user
    RetiredUser.objects.filter(user_id__in=ids).update(scrubbed_at=None)
    forget_parked_events_of(ids)
    if all_sinks()[RETIREMENT_SINK].is_enabled():
        outbox.enqueue(RETIREMENT_SINK, ids)


def user_tables() -> dict[str, tuple[TableSpec, bool]]:
    """Every table with a user column, by what an INSERT names it, and whether retired users' rows go."""
    tables: dict[str, tuple[TableSpec, bool]] = {}
    for sink in all_sinks().values():
        for table in sink.tables():
            if table.user_id_column:
                tables.setdefault(table.insert_target, (table, sink.deletes_retired_rows))
    return tables


def retired_users_in(writes: Sequence[Any]) -> set[int]:
    """Recorded retired users whose personal data these column batches carry (one query for all of them)."""
    tables = user_tables()
    batches = [
        (batch, *tables[batch.table]) for batch in writes if isinstance(batch, ColumnBatch) and batch.table in tables
    ]
    candidates: set[Any] = set()
    for batch, table, _ in batches:
        candidates.update(batch.columns[batch.column_names.index(table.user_id_column)])
    retired = retired_user_ids(candidates)
    if not retired:
        return set()
    found: set[int] = set()
    for batch, table, deletes_rows in batches:
        users = batch.columns[batch.column_names.index(table.user_id_column)]
        personal = [batch.columns[batch.column_names.index(column.name)] for column in table.pii_columns]
        for row, user in enumerate(users):
            if int(user) in retired and (deletes_rows or any(values[row] not in ("", None) for values in personal)):
                found.add(int(user))
    return found


def after_write(sink: Sink, object_ids: Sequence[Any], writes: Sequence[Any]) -> None:
    """
    Called once a batch's writes are acknowledged: queue retirement again for retired users it wrote
    personal data of, and note when a retirement's mutations all finished.
    """
    raced = _queue_raced(sink, writes)
    if sink.name == RETIREMENT_SINK and any(isinstance(write, Statement) for write in writes):
        done = {int(user_id) for user_id in object_ids} - raced
        RetiredUser.objects.filter(user_id__in=sorted(done)).update(scrubbed_at=timezone.now())


def send_each(sink: Sink, writes: Sequence[Any], send: Callable[[Any], None]) -> None:
    """
    ``send`` each write in turn, the way the drain and the backfill do. When one raises, the writes attempted (it
    included) may have landed: :func:`after_failed_write` looks at them, then the error goes on unchanged.
    """
    for attempted, write in enumerate(writes, start=1):
        try:
            send(write)
        except Exception:
            after_failed_write(sink, writes[:attempted])
            raise


def after_failed_write(sink: Sink, attempted: Sequence[Any]) -> None:
    """
    Called when a write raised: the writes attempted, the failing one included, may have landed (a timeout
    after ClickHouse applied an INSERT; a later table failing after earlier tables' rows were written), and
    the retry reads the learner with the exclusion, writes nothing personal and so would never queue the
    retirement again. So look at them as :func:`after_write` does. Nothing is marked scrubbed: the writes did
    not all finish. Never raises: the look may fail as well (the LMS database may be what failed), and the
    caller re-raises its own error, which decides what happens to the batch.
    """
    try:
        _queue_raced(sink, attempted)
    except Exception as error:
        log.warning(
            "aspects_sink: %s failed a write and could not look at what it may have written of retired users "
            "(%s); aspects_sink_retirement_check finds what stays",
            sink.name,
            error,
        )


def _queue_raced(sink: Sink, writes: Sequence[Any]) -> set[int]:
    """Queue retirement again for recorded retired users these writes carry personal data of; return them."""
    raced = retired_users_in(writes)
    if raced:
        log.warning(
            "aspects_sink: %s wrote personal data of %d retired users read before their retirement; "
            "removing it again (user ids %s)",
            sink.name,
            len(raced),
            sorted(raced)[:20],
        )
        record(raced)
    return raced


# Members of an xAPI actor that identify a person (ERB's IFI types other than the anonymous account, and a name).
PERSONAL_ACTOR_MEMBERS = ("mbox", "mbox_sha1sum", "openid", "name")


@dataclass(frozen=True)
class Finding:
    """Personal data of retired users found in one table: the table and the users (or xAPI actors) it holds."""

    table: str
    ids: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(self.ids[:50]) + (f" … ({len(self.ids)} in all)" if len(self.ids) > 50 else "")
        return f"{self.table}: {shown}"


def find_personal_data(transport: ClickHouseTransport, user_ids: Sequence[int]) -> list[Finding]:
    """
    Every table holding personal data of these retired users, one query per table for the whole batch: any
    row in a table that deletes retired users' rows, a non-empty personal column elsewhere, and statements
    of their xAPI actor ids (their external ids) that name the actor by a personal identifier. All physical
    rows count (no ``FINAL``): a row superseded but not yet merged away still holds the data.
    """
    findings = []
    ids = sorted(int(user_id) for user_id in user_ids)
    for table, deletes_rows in user_tables().values():
        user = schema.quote(table.user_id_column or "")
        condition = f"{user} IN {{user_ids:Array(Int64)}}"
        parameters: dict[str, Any] = {"user_ids": ids}
        if not deletes_rows:
            personal = table.pii_columns
            if not personal:
                continue
            blanks = []
            for i, column in enumerate(personal):
                blanks.append(f"{schema.quote(column.name)} != {{blank_{i}:{column.clickhouse_type}}}")
                parameters[f"blank_{i}"] = column.empty
            condition += f" AND ({' OR '.join(blanks)})"
        target = schema.qualified(table.name, table.database)
        found = transport.rows(f"SELECT DISTINCT {user} FROM {target} WHERE {condition} ORDER BY {user}", parameters)
        if found:
            findings.append(Finding(target, tuple(str(row[0]) for row in found)))
    actors = xapi_actor_ids(ids)
    if actors and toggles.xapi_enabled():
        target, condition, parameters = _personal_statements(actors)
        found = transport.rows(
            f"SELECT DISTINCT {_ACTOR} AS actor FROM {target} WHERE {condition} ORDER BY actor", parameters
        )
        if found:
            findings.append(Finding(target, tuple(str(row[0]) for row in found)))
    return findings


_ACTOR = "JSONExtractString(event, 'actor', 'account', 'name')"


def xapi_actor_ids(user_ids: Sequence[int]) -> list[str]:
    """The external ids of these users still in the LMS: the actor ids their statements carry."""
    try:
        external_id = edx_platform.get_model("external_id")
    except edx_platform.PlatformModelMissing:
        return []
    rows = external_id._default_manager.filter(user_id__in=list(user_ids)).values_list("external_user_id", flat=True)
    return sorted(str(value) for value in rows)


def _personal_statements(actors: Sequence[str]) -> tuple[str, str, dict]:
    table = raw_table()
    members = " OR ".join(f"JSONHas(event, 'actor', '{member}')" for member in PERSONAL_ACTOR_MEMBERS)
    condition = f"{_ACTOR} IN {{actors:Array(String)}} AND ({members})"
    return schema.qualified(table.name, table.database), condition, {"actors": list(actors)}


def xapi_repair(actors: Sequence[str]) -> Statement:
    """The mutation deleting statements of these actors that name them by a personal identifier."""
    table = raw_table()
    _, condition, parameters = _personal_statements(actors)
    sql = f"ALTER TABLE {table.mutation_target}{schema.on_cluster()} DELETE WHERE {condition}"
    return Statement(sql, parameters, schema.mutation_settings(), table.storage_name, schema.mutations_log())
