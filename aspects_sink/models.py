"""
The outbox: work recorded in the LMS database in the same transaction as the change it describes.

A receiver adds an :class:`OutboxEntry` beside the change; if the transaction rolls back, so does
the entry, and nothing is sent. Celery tasks drain entries after commit and delete them only once
ClickHouse has acknowledged the rows (docs/decisions/0001-transactional-outbox.rst).
"""

from django.db import models
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
    # Set by the worker that holds the lease, so it can find the entries it claimed.
    claim = models.CharField(max_length=32, blank=True, default="", db_index=True)
    attempts = models.PositiveIntegerField(default=0)
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
        indexes = [models.Index(fields=["state", "sink", "available_at"], name="aspects_sink_outbox_ready")]
        verbose_name = "outbox entry"
        verbose_name_plural = "outbox entries"

    def __str__(self) -> str:
        return f"{self.sink} {self.object_id} ({self.state}, {self.attempts} attempts)"


class VersionTick(models.Model):
    """
    A sequence in the LMS database. Each batch takes a number just before it reads the objects; that
    number is the rows' ``version`` in ClickHouse, so a later read always wins, with no clock involved.
    """

    id = models.BigAutoField(primary_key=True)

    class Meta:
        app_label = "aspects_sink"

    def __str__(self) -> str:
        return f"version {self.id}"

    @classmethod
    def allocate(cls) -> int:
        """The next number of the sequence: the version of rows read after this call."""
        tick = cls.objects.create()
        cls.objects.filter(id__lt=tick.id).delete()
        return tick.id


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
    One xAPI statement waiting for ClickHouse's raw xAPI table (``xapi.xapi_events_all``).

    Recorded by the event-tracking backend in the transaction of the request (or task) that emitted the
    event, with the statement itself: unlike platform objects, an event cannot be read again later.
    ``event_id`` is the statement id event-routing-backends derives from actor, verb and time, so a
    statement sent twice collapses in ClickHouse.
    """

    event_id = models.CharField(max_length=36)
    emission_time = models.DateTimeField()
    statement = models.TextField(help_text="the statement as JSON, exactly as ClickHouse receives it")

    class Meta:
        app_label = "aspects_sink"
        indexes = [models.Index(fields=["state", "available_at"], name="aspects_sink_xapi_ready")]
        verbose_name = "xAPI statement"

    def __str__(self) -> str:
        return f"xAPI statement {self.event_id} ({self.state}, {self.attempts} attempts)"


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

    class Meta:
        app_label = "aspects_sink"
        verbose_name = "sink health"
        verbose_name_plural = "sink health"

    def __str__(self) -> str:
        return f"{self.sink}: {'paused' if self.paused_since else 'flowing'}"


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
