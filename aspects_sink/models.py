"""
The outbox: work recorded in the LMS database in the same transaction as the change it describes.

A receiver adds an :class:`OutboxEntry` beside the change; if the transaction rolls back, so does
the entry, and nothing is sent. Celery tasks drain entries after commit and delete them only once
ClickHouse has acknowledged the rows (docs/decisions/0001-transactional-outbox.rst).
"""

import datetime
from collections.abc import Iterable
from typing import Any

from django.db import connection, connections, models, router, transaction
from django.utils import timezone


class LeasedEntry(models.Model):
    """
    What every queue of work for ClickHouse keeps per entry, so one set of outbox operations (claim,
    acknowledge, retry, park) serves the outbox of platform objects and queues with a table of their own.
    """

    PENDING = "pending"
    DEAD = "dead"
    STATES = ((PENDING, "pending"), (DEAD, "dead letter"))

    id = models.BigAutoField(primary_key=True)
    created = models.DateTimeField(default=timezone.now)
    # Not before this time: the lease of a worker that claimed the entry, or the next retry after a failure.
    available_at = models.DateTimeField(default=timezone.now)
    # Set by the worker that holds the lease: it finds its entries by it, and acknowledges, retries or parks
    # only entries still holding it, so a worker whose lease ran out cannot touch a newer holder's entries.
    claim = models.CharField(max_length=32, blank=True, default="", db_index=True)
    # Tries that may have been the data's fault: counted when a batch is claimed (a worker killed mid-batch
    # still counts), given back when ClickHouse was unavailable or misconfigured. Parked at the queue's maximum.
    attempts = models.PositiveIntegerField(default=0)
    # Tries that found ClickHouse unavailable or misconfigured: they set the backoff and never park anything.
    waits = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=8, choices=STATES, default=PENDING)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        abstract = True


class OutboxEntry(LeasedEntry):
    """One object of one sink that ClickHouse must be told about."""

    sink = models.CharField(max_length=64)
    object_id = models.CharField(max_length=255)

    class Meta:
        app_label = "aspects_sink"
        # The claim order (docs/decisions/0001): ready entries are read from this index in order, O(batch) however
        # large the backlog, with no sort of it.
        indexes = [models.Index(fields=["state", "sink", "available_at", "id"], name="aspects_sink_outbox_claim")]
        verbose_name = "outbox entry"
        verbose_name_plural = "outbox entries"

    def __str__(self) -> str:
        return f"{self.sink} {self.object_id} ({self.state}, {self.attempts} attempts)"


class Tick(int):
    """A number of the version sequence, with the LMS database's time it was taken at (``at``)."""

    at: datetime.datetime

    def __new__(cls, number: int, at: datetime.datetime) -> "Tick":
        tick = super().__new__(cls, number)
        tick.at = at
        return tick


class VersionTick(models.Model):
    """
    A sequence in the LMS database. Each batch takes a number just before it reads the objects; that
    number is the rows' ``version`` in ClickHouse, so a later read always wins, with no clock involved.

    Each number also carries a time, for Aspects' own tables, whose readers pick the latest row by
    ``max(time_last_dumped)``: taken from the LMS database's clock, never the worker's, and made later
    than the previous number's, so for any one object the order of the times is the order of the
    versions, whichever worker host took them (docs/decisions/0002-row-versions.rst).
    """

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(null=True)

    class Meta:
        app_label = "aspects_sink"

    def __str__(self) -> str:
        return f"version {self.id}"

    @classmethod
    def allocate(cls) -> Tick:
        """
        The next number of the sequence, the version of rows read after this call, with its time.

        The latest number's row is locked while the next is taken, so two workers take numbers and
        times in one order. Older rows are deleted, except the latest, which the next caller locks.
        """
        with transaction.atomic():
            previous = cls.objects.select_for_update().order_by("-id").values_list("id", "at").first()
            at = database_now()
            if previous and previous[1] and at <= previous[1]:
                at = previous[1] + datetime.timedelta(microseconds=1)
            tick = cls.objects.create(at=at)
            if previous:
                cls.objects.filter(id__lt=previous[0]).delete()
        return Tick(tick.id, at)


def database_now() -> datetime.datetime:
    """
    The LMS database's clock (UTC, microseconds), one clock for every worker host. SQLite is a file on
    this host, so there this host's clock is the database's.
    """
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT UTC_TIMESTAMP(6)")
            return cursor.fetchone()[0].replace(tzinfo=datetime.UTC)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0].astimezone(datetime.UTC)
    return timezone.now().astimezone(datetime.UTC)


class DumpCheckpoint(models.Model):
    """
    How far a backfill (``dump_data_to_clickhouse``) got through one range of one sink's primary keys.

    A plain run has one range per sink, from its first object to its last; ``--workers`` splits the
    keys into several. ``last_acknowledged`` moves only after ClickHouse has acknowledged a batch, so
    ``--resume`` continues after it without sending anything twice. Keys are stored as text because
    sinks' primary keys are numbers or course keys. ``parameters`` are the run's selection options
    (``--force``, ``--limit``, ``--ids_to_skip``) and target, which a resumed run must keep.
    """

    PENDING = "pending"  # waiting for a worker
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"  # interrupted or given up on; --resume continues it
    STATES = ((PENDING, "pending"), (RUNNING, "running"), (DONE, "done"), (STOPPED, "stopped"))

    id = models.BigAutoField(primary_key=True)
    sink = models.CharField(max_length=64, db_index=True)
    # Keys as text; "" means open: from the first object, to the last, nothing acknowledged yet.
    range_start = models.CharField(max_length=255, blank=True, default="", help_text="exclusive lower bound")
    range_end = models.CharField(max_length=255, blank=True, default="", help_text="inclusive upper bound")
    last_acknowledged = models.CharField(max_length=255, blank=True, default="")
    rows = models.PositiveBigIntegerField(default=0)
    skipped = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    parameters = models.JSONField(default=dict)
    state = models.CharField(max_length=8, choices=STATES, default=PENDING)
    # The dispatch allowed to work on the range: a Celery task from an abandoned dispatch finds another token.
    token = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "aspects_sink"

    def __str__(self) -> str:
        return f"{self.sink} ({self.range_start or '…'}, {self.range_end or '…'}] {self.state}"


class XapiStatement(LeasedEntry):
    """
    One xAPI statement, or one tracking event to make statements of, waiting for ClickHouse's raw xAPI table
    (``xapi.xapi_events_all``).

    The xAPI route records the tracking event (``event_name`` set, ``statement`` the event as JSON) in the
    transaction of the request (or task) that emitted it: unlike platform objects, an event cannot be read
    again later. The drain makes the statements of it with event-routing-backends' transformers, in batches
    (docs/decisions/0005-xapi-to-clickhouse.rst). Statements a history import could not insert wait as
    statements (``event_name`` blank): ``event_id`` is the statement id ERB derives from actor, verb and time,
    so a statement sent twice collapses in ClickHouse.
    """

    event_id = models.CharField(max_length=36, blank=True)
    emission_time = models.DateTimeField()
    statement = models.TextField(help_text="the statement as JSON, as ClickHouse receives it; or the tracking event")
    event_name = models.CharField(
        max_length=255, blank=True, default="", help_text="a tracking event's name: the drain transforms it"
    )

    class Meta:
        app_label = "aspects_sink"
        indexes = [models.Index(fields=["state", "available_at", "id"], name="aspects_sink_xapi_claim")]
        verbose_name = "xAPI statement"

    def __str__(self) -> str:
        what = f"{self.event_name} event" if self.event_name else f"xAPI statement {self.event_id}"
        return f"{what} ({self.state}, {self.attempts} attempts)"


class SinkHealth(models.Model):
    """
    What the drains last saw of one sink (or queue), durable and shared by every process: the last
    successful INSERT and the counts delivered, the last error and its class, and whether the sink is paused
    by a configuration error. Written by the drains (:mod:`aspects_sink.health`), read by operators' tools.
    Counters only grow; rates come from their differences between two readings.
    """

    UNAVAILABLE = "unavailable"  # ClickHouse unreachable or overloaded: wait and retry; never counted against data
    CONFIGURATION = "configuration"  # missing table/column/database, wrong password, missing grant: the sink pauses
    REJECTED = "rejected"  # the data is at fault: the object is isolated, retried, and finally parked
    ERROR_CLASSES = ((UNAVAILABLE, "unavailable"), (CONFIGURATION, "configuration"), (REJECTED, "rejected"))

    sink = models.CharField(max_length=64, primary_key=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    rows_delivered = models.PositiveBigIntegerField(default=0)
    inserts = models.PositiveBigIntegerField(default=0)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_class = models.CharField(max_length=16, choices=ERROR_CLASSES, blank=True, default="")
    last_error = models.TextField(blank=True, default="", help_text="the error, without secrets")
    paused_since = models.DateTimeField(null=True, blank=True, help_text="set while a configuration error stops it")
    failed_outbox_writes = models.PositiveBigIntegerField(
        default=0,
        help_text="changes whose outbox entry could not be recorded (sent with the next change or a backfill)",
    )
    # The last changes that could not be recorded, apart from ``last_error``: a drain's error recorded afterwards
    # must not hide them.
    outbox_failed_at = models.DateTimeField(null=True, blank=True)
    outbox_failure = models.TextField(blank=True, default="", help_text="why, without secrets")

    class Meta:
        app_label = "aspects_sink"
        verbose_name = "sink health"
        verbose_name_plural = "sink health"

    def __str__(self) -> str:
        return f"{self.sink}: {'paused' if self.paused_since else 'flowing'}"


class RetiredUser(models.Model):
    """
    A learner whose personal data must never be in ClickHouse again, whatever their username is now.

    Written in the retirement's own transaction (``USER_RETIRE_LMS_MISC``, or the user's deletion), before
    the platform renames the account: every path that writes personal data (drains, backfills, the xAPI
    route, site sinks) leaves recorded users out, and a batch that read one before the record existed has
    its rows removed again (docs/decisions/0008-retirement-that-converges.rst). ``scrubbed_at`` is when
    the last retirement mutations covering the user finished in ClickHouse (``system.mutations``); it is
    None while they are pending or failing, which operators' tools report. Rows are never deleted.
    """

    user_id = models.BigIntegerField(primary_key=True, help_text="the LMS user's id (the user may be deleted)")
    retired_at = models.DateTimeField(default=timezone.now)
    scrubbed_at = models.DateTimeField(
        null=True, blank=True, help_text="when ClickHouse last finished removing the user's data"
    )

    class Meta:
        app_label = "aspects_sink"
        verbose_name = "retired user"

    def __str__(self) -> str:
        return f"retired user {self.user_id}"


_ID_CHUNK = 900  # stay under SQLite's bound on parameters per statement
# Ids this dense or denser (a batch's span of ids at most this many times its count) are looked up as one range.
_RANGE_DENSITY = 16


def retired_user_ids(user_ids: Iterable[Any]) -> set[int]:
    """
    Which of these user ids are recorded as retired. The filter every path that writes personal data applies to
    a batch (tracking-log history included), whatever the users' names: one read of the range of ids when they are
    dense (a backlog's batch: at most sixteen recorded users read per id asked), else one query per 900 ids.

    The ids go to the database driver as they are, in a plain ``IN`` list: the ORM's ``__in`` lookup prepares
    each of them in Python, which took half of a backfill's time (two lookups per batch of 10,000 rows).
    """
    ids = sorted({int(user_id) for user_id in user_ids if user_id not in (None, "")})
    if not ids:
        return set()
    if ids[-1] - ids[0] < _RANGE_DENSITY * len(ids):
        in_range = RetiredUser.objects.filter(user_id__gte=ids[0], user_id__lte=ids[-1])
        return set(in_range.values_list("user_id", flat=True)).intersection(ids)
    found: set[int] = set()
    database = connections[router.db_for_read(RetiredUser)]
    table = database.ops.quote_name(RetiredUser._meta.db_table)
    column = database.ops.quote_name(RetiredUser._meta.pk.column)
    with database.cursor() as cursor:
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(chunk))})", chunk)
            found.update(int(row[0]) for row in cursor.fetchall())
    return found


class HistoryCheckpoint(models.Model):
    """
    How far ``aspects_sink_xapi_history`` got through one tracking log (a file, or an object in a bucket).

    ``lines_done`` moves only after ClickHouse has acknowledged (or the statement queue has taken) the
    statements of those lines, so ``--resume`` continues after it, in another process or pod, without
    losing a statement; a batch acknowledged just before a kill, its checkpoint not yet saved, is sent again
    and collapses with the first copy (same statement ids, ``ReplacingMergeTree``). A log whose size changed
    since, or written again since (``modified``), is read again from its start. ``last_error`` says why a log
    could not be finished (a corrupt gzip member); the run went on with the others.
    """

    log_hash = models.CharField(max_length=64, primary_key=True, help_text="sha256 of the source and the key")
    source = models.CharField(max_length=255, help_text="s3://bucket, or file")
    key = models.TextField(help_text="the object's key, or the file's path")
    size = models.PositiveBigIntegerField()
    modified = models.DateTimeField(null=True, help_text="when the log was last written, as this run found it")
    lines_done = models.PositiveBigIntegerField(default=0)
    statements = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0, help_text="events that could not be imported")
    finished = models.BooleanField(default=False)
    last_error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "aspects_sink"

    def __str__(self) -> str:
        return f"{self.source} {self.key}: {self.lines_done} lines{' (finished)' if self.finished else ''}"


class DeadLetter(OutboxEntry):
    """The outbox entries parked as dead letters, for their own admin page (replay, discard)."""

    class Meta:
        proxy = True
        app_label = "aspects_sink"
        verbose_name = "dead letter"


class DeadXapiStatement(XapiStatement):
    """The xAPI statements parked as dead letters, for their own admin page (replay, discard)."""

    class Meta:
        proxy = True
        app_label = "aspects_sink"
        verbose_name = "dead xAPI statement"
