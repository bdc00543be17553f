"""
Outbox operations in the LMS database: record work, claim a batch, acknowledge, retry, park.

A claim is a lease (like a queue's visibility timeout): claimed entries become invisible for
``LEASE`` and are deleted on success; if the worker dies, the lease runs out and the sweep sends
them again. Nothing is ever removed before ClickHouse has acknowledged it. Every change after the claim
names the lease's token, so a worker whose lease ran out (a long pause, a clock ahead of the others)
changes nothing another worker now holds (docs/decisions/0001).

A claim counts a try (``attempts``) on its entries at once, so a batch that kills its worker (the OOM
killer, SIGKILL) is counted too: entries that were tried before are claimed in smaller batches (halved per
try), and an entry whose tries reach the queue's maximum without an outcome is parked. Outcomes that are
not the data's fault (ClickHouse unavailable or misconfigured, the LMS database failing) give the try back.

Each sink's work is a :class:`Queue`, laid out as the sink declares (:class:`~aspects_sink.sinks.base.QueueSpec`):
platform objects share the ``OutboxEntry`` table, where an entry only names the object (it is read again
when sent); work that carries its own payload, such as xAPI statements, has a table of its own. The same
operations, drains, sweep and dead-letter tools serve both.
"""

from __future__ import annotations

import datetime
import functools
import logging
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import DatabaseError, connections, router, transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from aspects_sink import health, scheduling
from aspects_sink.conf import aspects_settings
from aspects_sink.models import LeasedEntry, OutboxEntry
from aspects_sink.sinks.base import QueueSpec
from aspects_sink.sinks.registry import UnknownSink, all_sinks, get_sink

log = logging.getLogger(__name__)

LEASE = datetime.timedelta(minutes=5)
_CHUNK = 900  # stay under SQLite's bound on parameters per statement


@dataclass(frozen=True)
class Claimed:
    """
    An outbox entry a worker holds the lease on; ``object_id`` is what its sink is handed to write,
    ``attempts`` the tries counted so far (this one included), ``claim`` the lease's token.
    """

    id: int
    object_id: str
    attempts: int
    waits: int = 0
    claim: str = ""


@dataclass(frozen=True)
class QueueSummary:
    """How many entries of one queue are pending and dead, and when the next pending one is due."""

    pending: int = 0
    dead: int = 0
    next_due: datetime.datetime | None = None


@dataclass(frozen=True)
class Queue:
    """One sink's pending work and dead letters in the LMS database, where its :class:`QueueSpec` says."""

    name: str
    spec: QueueSpec = field(default_factory=QueueSpec)

    @property
    def model(self) -> type[LeasedEntry]:
        return self.spec.model

    @property
    def entries(self) -> QuerySet:
        manager = self.model._default_manager
        return manager.filter(**{self.spec.sink_field: self.name}) if self.spec.shared else manager.all()

    @property
    def batch_size(self) -> int:
        return int(getattr(aspects_settings, self.spec.batch_size_setting))

    @property
    def max_attempts(self) -> int:
        """Failed tries after which an entry ClickHouse keeps rejecting is parked as a dead letter."""
        return int(getattr(aspects_settings, self.spec.max_attempts_setting))

    def add(self, entries: Sequence[LeasedEntry]) -> int:
        """
        Record entries in the caller's transaction; wake a drain after commit (nothing if it rolls back).

        The write has a savepoint of its own: if it fails (the plugin's migrations not run, the table
        locked), the platform's transaction goes on without it. The failure is logged at ERROR with the
        objects and counted in the sink's health; those changes reach ClickHouse with the object's next
        change or a backfill (docs/decisions/0001). Return the entries recorded.
        """
        if not entries:
            return 0
        try:
            with transaction.atomic():
                if len(entries) == 1:
                    entries[0].save()  # the usual case for a statement; a third cheaper than bulk_create
                else:
                    self.model._default_manager.bulk_create(entries)
        except DatabaseError as error:
            keys = [str(getattr(entry, self.spec.key_field, "") or entry.pk) for entry in entries]
            described = ", ".join(keys[:20]) if self.spec.shared else _describe_payloads(entries, self.spec)
            self._not_recorded(len(entries), described, error)
            return 0
        transaction.on_commit(lambda: _wake(self.name), robust=True)
        return len(entries)

    def insert(self, fields: Sequence[str], rows: Sequence[Sequence]) -> int:
        """
        Record entries given as values of ``fields`` (every other field takes its default) in the caller's
        transaction, with one INSERT of the queue's own; wake a drain after commit (nothing if it rolls back).

        The xAPI route records every tracked event this way, in the learner's request, where model instances,
        the ORM's INSERT and a savepoint around it cost more than the rest of the recording. There is no
        savepoint: on MariaDB, MySQL and SQLite a failed INSERT fails alone and the transaction goes on. A
        failure is logged and counted as :meth:`add`'s are. Return the entries recorded.
        """
        if not rows:
            return 0
        using = router.db_for_write(self.model)
        connection = connections[using]
        plan = _insert_plan(self.model, tuple(fields), using)
        defaults = [field.get_db_prep_save(field.default(), connection) for field in plan.computed] + plan.constant
        params = [
            [field.get_db_prep_save(value, connection) for field, value in zip(plan.given, row)] + defaults
            for row in rows
        ]
        try:
            with connection.cursor() as cursor:
                if len(params) == 1:
                    cursor.execute(plan.sql, params[0])
                else:
                    cursor.executemany(plan.sql, params)
        except DatabaseError as error:
            field_name = self.spec.payload_field or self.spec.key_field
            column = list(fields).index(field_name) if field_name in fields else 0
            self._not_recorded(len(rows), "; ".join(str(row[column])[:2000] for row in rows[:5]), error)
            return 0
        transaction.on_commit(lambda: _wake(self.name), using=using, robust=True)
        return len(rows)

    def _not_recorded(self, count: int, described: str, error: Exception) -> None:
        """
        Entries could not be recorded: log them at ERROR (their only trace) and count them in the sink's health
        once the platform's transaction commits. Counting them inside it would lock the sink's health row until
        the request ends, and every other request failing alike would wait on that lock; a transaction that
        rolls back lost no change to count.
        """
        log.error(
            "aspects_sink: could not record %d %s change(s) in the outbox (%s): %s; they are sent with the "
            "next change of the object or a backfill",
            count,
            self.name,
            described,
            error,
        )
        message = f"{type(error).__name__}: {error}"
        transaction.on_commit(lambda: health.record_outbox_failure(self.name, count, message), robust=True)

    def claim(self, limit: int) -> list[Claimed]:
        """
        Take the lease on up to ``limit`` entries ready to send, the longest due first, and count a try on them.

        Entries tried before make the batch smaller: at most ``limit / 2^attempts`` entries for the most tried
        one in it, so a batch that keeps failing (or killing its worker) is split until its culprit is alone.
        An entry whose tries reached the queue's maximum without an outcome (its workers died) is parked.

        Claiming is one conditional UPDATE (tag the entries still ready up to the last candidate in claim order
        with a fresh token, push their ``available_at`` past the lease and count the try) followed by a read of
        that token. It needs no
        locking read, so it behaves the same on MySQL and on SQLite, where a read that later writes inside one
        transaction fails at once with "database is locked" when another process writes. The candidates are
        read in the order of the claim index (``state, [sink,] available_at, id``): O(batch) however long the
        backlog.
        """
        now = timezone.now()
        ready = self.entries.filter(state=LeasedEntry.PENDING, available_at__lte=now)
        found = list(ready.order_by("available_at", "id").values_list("id", "attempts", "available_at")[:limit])
        max_attempts = self.max_attempts
        worn_out = [entry_id for entry_id, attempts, _ in found if attempts >= max_attempts]
        if worn_out:
            self._park_worn_out(worn_out, now)
        last, taken, most_tried = None, 0, 0
        for entry in found:
            if entry[1] >= max_attempts:
                continue
            most_tried = max(most_tried, entry[1])
            if taken >= max(limit >> most_tried, 1):
                break
            last, taken = entry, taken + 1
        if last is None:
            return []
        # The candidates are the ready entries up to the last one in claim order (those worn out are parked now):
        # one UPDATE of that stretch of the claim index, whatever the batch size.
        last_id, _, last_at = last
        up_to_last = Q(available_at__lt=last_at) | Q(available_at=last_at, id__lte=last_id)
        token = uuid.uuid4().hex
        ready.filter(up_to_last).update(claim=token, available_at=now + LEASE, attempts=F("attempts") + 1)
        mine = self.model._default_manager.filter(claim=token, state=LeasedEntry.PENDING).order_by("id")
        rows = mine.values_list("id", self.spec.key_field, "attempts", "waits")
        return [Claimed(entry_id, str(key), attempts, waits, token) for entry_id, key, attempts, waits in rows]

    def claim_same_objects(self, claimed: Sequence[Claimed]) -> list[Claimed]:
        """
        Take, under the lease of ``claimed``, the other ready entries of the same objects. The objects are read
        after this, so one write covers every change recorded of them: a publishing storm of a course is one dump
        even when it left more entries than a batch of a fan-out sink holds (``Sink.objects_per_batch``).
        """
        if not claimed:
            return []
        token, now = claimed[0].claim, timezone.now()
        ready = self.entries.filter(state=LeasedEntry.PENDING, available_at__lte=now)
        keys = list(dict.fromkeys(entry.object_id for entry in claimed))
        for chunk in _chunks(keys):
            ready.filter(**{f"{self.spec.key_field}__in": chunk}).update(
                claim=token, available_at=now + LEASE, attempts=F("attempts") + 1
            )
        known = {entry.id for entry in claimed}
        mine = self.model._default_manager.filter(claim=token, state=LeasedEntry.PENDING).order_by("id")
        rows = mine.values_list("id", self.spec.key_field, "attempts", "waits")
        return [Claimed(row[0], str(row[1]), row[2], row[3], token) for row in rows if row[0] not in known]

    def _park_worn_out(self, ids: list[int], now: datetime.datetime) -> None:
        """Park entries whose every try ended without an outcome: the batch they were in killed its worker."""
        error = RuntimeError(
            f"no outcome after {self.max_attempts} tries: the worker sending it died each time (out of memory?)"
        )
        parked = 0
        for chunk in _chunks(ids):
            parked += self.entries.filter(
                id__in=chunk, state=LeasedEntry.PENDING, attempts__gte=self.max_attempts, available_at__lte=now
            ).update(state=LeasedEntry.DEAD, last_error=_describe(error), claim="")
        if parked:
            log.error("aspects_sink: parked %d %s entries as dead letters: %s", parked, self.name, error)

    def acknowledge(self, claimed: Sequence[Claimed], *, whole_lease: bool = False) -> None:
        """
        ClickHouse has the rows: forget the entries (those this lease still holds). ``whole_lease``: they are every
        entry their lease took, forgotten by the lease's token with one DELETE.
        """
        if whole_lease:
            for token in {entry.claim for entry in claimed}:
                self.model._default_manager.filter(claim=token).delete()
            return
        for token, chunk in _held(claimed):
            self.model._default_manager.filter(id__in=chunk, claim=token).delete()

    def retry_later(self, claimed: Sequence[Claimed], error: Exception) -> float:
        """The data failed this try (already counted): hide the entries until their backoff has passed."""
        delay = backoff_seconds(max(entry.attempts for entry in claimed))
        self._update(
            claimed,
            available_at=timezone.now() + datetime.timedelta(seconds=delay),
            last_error=_describe(error),
            claim="",
        )
        return delay

    def give_back(self, claimed: Sequence[Claimed], error: Exception, waits: int) -> float:
        """
        Not the data's fault (ClickHouse unavailable or misconfigured): return the try and wait, with jitter,
        the backoff of the ``waits``-th wait in a row; return that delay. Nothing is ever parked for this.
        """
        delay = jittered(backoff_seconds(waits))
        self._update(
            claimed,
            attempts=F("attempts") - 1,
            waits=F("waits") + 1,
            available_at=timezone.now() + datetime.timedelta(seconds=delay),
            last_error=_describe(error),
            claim="",
        )
        return delay

    def release(self, claimed: Sequence[Claimed], delay: float = 0.0) -> None:
        """Return the try and the lease without a verdict (the LMS database failed, or time ran out)."""
        self._update(
            claimed,
            attempts=F("attempts") - 1,
            available_at=timezone.now() + datetime.timedelta(seconds=delay),
            claim="",
        )

    def postpone(self, claimed: Sequence[Claimed]) -> None:
        """Leave the try counted and make the entries ready again: the next claims split them further."""
        self._update(claimed, available_at=timezone.now(), claim="")

    def park(self, claimed: Sequence[Claimed], error: Exception) -> None:
        """Move entries to the dead letters, with the error that put them there, within the queue's bound."""
        self._update(claimed, state=LeasedEntry.DEAD, last_error=_describe(error), claim="")
        if self.spec.max_dead_setting:
            self._evict_oldest_dead(int(getattr(aspects_settings, self.spec.max_dead_setting)))

    def dead_letters(self) -> QuerySet:
        return self.entries.filter(state=LeasedEntry.DEAD).order_by("id")

    def replay(self, ids: Sequence[int] | None = None) -> int:
        """Put dead letters back in the queue (all, or those ids) and wake the drain after commit."""
        dead = self.entries.filter(state=LeasedEntry.DEAD)
        if ids is not None:
            dead = dead.filter(id__in=ids)
        count = dead.update(state=LeasedEntry.PENDING, attempts=0, waits=0, available_at=timezone.now())
        if count:
            transaction.on_commit(lambda: _wake(self.name))
        return count

    def size_bound(self) -> int:
        """
        At least as many entries as the queue's table holds: the span of its ids, two reads of the primary key
        whatever the backlog (a ``COUNT`` of millions of rows would scan them). Entries of other sinks sharing
        the table and dead letters are included, so it errs high.
        """
        manager = self.model._default_manager
        first = manager.order_by("id").values_list("id", flat=True).first()
        last = manager.order_by("-id").values_list("id", flat=True).first()
        return 0 if first is None else last - first + 1

    def next_due(self) -> datetime.datetime | None:
        """When the next pending entry is due (None: nothing pending): one read of the claim index."""
        pending = self.entries.filter(state=LeasedEntry.PENDING).order_by("available_at", "id")
        return pending.values_list("available_at", flat=True).first()

    def summary(self) -> QueueSummary:
        """How many entries are pending, how many are dead, and when the next is due."""
        return _summary(self.entries.values("state").annotate(count=Count("id"), due=Min("available_at")))

    def _update(self, claimed: Sequence[Claimed], **changes) -> None:
        """Change the entries this lease still holds; those another worker claimed since are left alone."""
        for token, chunk in _held(claimed):
            self.model._default_manager.filter(id__in=chunk, claim=token).update(**changes)

    def _evict_oldest_dead(self, bound: int) -> None:
        excess = self.dead_letters().count() - bound
        if excess <= 0:
            return
        evicted = list(self.dead_letters().values_list("id", self.spec.key_field, "last_error")[:excess])
        for chunk in _chunks([entry_id for entry_id, _, _ in evicted]):
            self.model._default_manager.filter(id__in=chunk).delete()
        field_name = self.spec.payload_field
        payload = f" (its {field_name} not logged: it may hold personal data)" if field_name else ""
        for entry_id, key, error in evicted:
            # Ids and the error's class only: a payload, or a rejection quoting it, may hold personal data.
            log.error(
                "aspects_sink: %s holds more than %d dead letters; evicted the oldest: id %s, %s %s, error %s%s",
                self.name, bound, entry_id, self.spec.key_field, key, error.split(":", 1)[0], payload,
            )  # fmt: skip


def queue(sink_name: str) -> Queue:
    """
    The queue of a sink, as the sink declares it. Entries of a sink this process does not know (a site
    sink since removed) are still shown and replayed: they sit in ``OutboxEntry`` under that name.
    """
    try:
        return Queue(sink_name, get_sink(sink_name).queue)
    except UnknownSink:
        return Queue(sink_name)


def _own_table_queues() -> list[Queue]:
    """The queues of sinks whose entries have a table of their own."""
    return [Queue(name, sink.queue) for name, sink in all_sinks().items() if not sink.queue.shared]


def queues_with_dead_letters(sink_name: str | None = None) -> list[Queue]:
    """The queue of ``sink_name``, or every queue holding dead letters."""
    if sink_name:
        return [queue(sink_name)]
    outbox_sinks = OutboxEntry.objects.filter(state=OutboxEntry.DEAD).values_list("sink", flat=True).distinct()
    own = [own for own in _own_table_queues() if own.dead_letters().exists()]
    return [queue(name) for name in sorted(outbox_sinks)] + own


def enqueue(sink_name: str, object_ids: Iterable) -> int:
    """
    Record that these objects changed, in the caller's transaction, and wake a drain after commit.

    Called by receivers while the platform's own transaction is open: if it rolls back, the entries
    vanish with it and nothing is sent.
    """
    entries = [OutboxEntry(sink=sink_name, object_id=str(object_id)) for object_id in dict.fromkeys(object_ids)]
    return queue(sink_name).add(entries)


def _wake(sink_name: str) -> None:
    """
    Wake the sink's drain after commit. Runs in the platform's request: it never raises (a lost wake-up is
    picked up by the sweep), whatever the cache or the broker do.
    """
    try:
        scheduling.schedule_drain(sink_name)
    except Exception as error:  # nothing may reach the platform's request
        log.warning("aspects_sink: could not wake the %s drain (the sweep will): %s", sink_name, error)


def replay_dead_letters(ids: Sequence[int] | None = None, sink_name: str | None = None) -> int:
    """
    Put dead letters back in their queues (all, some ids, or one sink's) and wake their drains.

    Ids number the rows of one table: without ``sink_name`` they are ``OutboxEntry`` ids, and queues with
    a table of their own are replayed only when no ids are given.
    """
    selected = queues_with_dead_letters(sink_name)
    if ids is not None and not sink_name:
        selected = [each for each in selected if each.model is OutboxEntry]
    return sum(each.replay(ids) for each in selected)


def jittered(delay: float) -> float:
    """A delay between half and all of ``delay``, so workers waiting on one outage do not return in step."""
    return delay * random.uniform(0.5, 1.0)  # spreading retries, not security


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff: base × 2^(attempts-1), capped."""
    base = float(aspects_settings.ASPECTS_SINK_RETRY_BASE_SECONDS)
    return min(base * 2 ** max(attempts - 1, 0), float(aspects_settings.ASPECTS_SINK_RETRY_MAX_SECONDS))


def summaries() -> dict[str, QueueSummary]:
    """Per sink with any entries: how many are pending and dead, and when the next is due."""
    by_sink: dict[str, list[dict]] = {}
    rows = OutboxEntry.objects.values("sink", "state").annotate(count=Count("id"), due=Min("available_at"))
    for row in rows:
        by_sink.setdefault(row["sink"], []).append(row)
    found = {sink_name: _summary(rows) for sink_name, rows in by_sink.items()}
    for own in _own_table_queues():
        summary = own.summary()
        if summary.pending or summary.dead:
            found[own.name] = summary
    return found


def _summary(rows: Iterable[dict]) -> QueueSummary:
    """One queue's summary from its rows of counts by state."""
    counts = {row["state"]: row for row in rows}
    pending = counts.get(LeasedEntry.PENDING, {})
    return QueueSummary(
        pending=pending.get("count", 0),
        dead=counts.get(LeasedEntry.DEAD, {}).get("count", 0),
        next_due=pending.get("due"),
    )


def _held(claimed: Sequence[Claimed]) -> Iterable[tuple[str, list[int]]]:
    """Ids of the claimed entries by lease token, in chunks."""
    by_token: dict[str, list[int]] = {}
    for entry in claimed:
        by_token.setdefault(entry.claim, []).append(entry.id)
    for token, ids in by_token.items():
        for chunk in _chunks(ids):
            yield token, chunk


def _describe_payloads(entries: Sequence[LeasedEntry], spec: QueueSpec) -> str:
    """What the entries carry, for the log line of entries that could not be recorded (their only trace)."""
    field_name = spec.payload_field or spec.key_field
    return "; ".join(str(getattr(entry, field_name, ""))[:2000] for entry in entries[:5])


@dataclass(frozen=True)
class _InsertPlan:
    """
    :meth:`Queue.insert`'s statement: ``INSERT INTO <table> (<given>, <computed>, <the others>) VALUES (%s, …)``,
    the fields given per row, those whose default is computed per INSERT (the times), and the database values
    of the others' defaults, adapted once.
    """

    sql: str
    given: list
    computed: list
    constant: list


@functools.cache
def _insert_plan(model: type[LeasedEntry], fields: tuple[str, ...], using: str) -> _InsertPlan:
    options, connection = model._meta, connections[using]
    given = [options.get_field(name) for name in fields]
    others = [field for field in options.concrete_fields if not field.primary_key and field.name not in fields]
    computed = [field for field in others if field.has_default() and callable(field.default)]
    constant = [field for field in others if field not in computed]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in [*given, *computed, *constant])
    placeholders = ", ".join(["%s"] * (len(given) + len(others)))
    return _InsertPlan(
        sql=f"INSERT INTO {quote(options.db_table)} ({columns}) VALUES ({placeholders})",
        given=given,
        computed=computed,
        constant=[field.get_db_prep_save(field.get_default(), connection) for field in constant],
    )


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:4000]
