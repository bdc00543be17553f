"""
Prometheus metrics of the plugin, computed from the LMS database (and two ClickHouse queries) when scraped.

Every figure comes from :func:`aspects_sink.status.collect`, the same as the status command's, so it is right
whatever the number of gunicorn and Celery processes: nothing is counted in a process's memory, and no
multiprocess directory is needed. Delivered rows and INSERTs are the drains' durable counters
(:class:`~aspects_sink.models.SinkHealth`). The text is prometheus-client's exposition of a custom collector.

The endpoint is for staff (logged in to the LMS) or for a scraper holding ``ASPECTS_SINK_METRICS_TOKEN``
(``Authorization: Bearer <token>``).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from aspects_sink import status
from aspects_sink.conf import aspects_settings

PREFIX = "aspects_sink"


def _timestamp(value) -> float:
    return value.timestamp() if value else 0.0


def families(found: status.SystemStatus) -> list[Metric]:
    """The metric families showing ``found``; names and labels are documented in docs/monitoring/README.md."""
    sink = ["sink"]
    pending = GaugeMetricFamily(f"{PREFIX}_pending_entries", "Entries waiting to be sent to ClickHouse.", labels=sink)
    oldest = GaugeMetricFamily(
        f"{PREFIX}_oldest_pending_age_seconds", "Age of the oldest pending entry (0 when none).", labels=sink
    )
    retrying = GaugeMetricFamily(
        f"{PREFIX}_retrying_entries", "Pending entries that failed at least once.", labels=sink
    )
    dead = GaugeMetricFamily(
        f"{PREFIX}_dead_letters", "Entries parked after too many rejections, by reason.", labels=["sink", "reason"]
    )
    rows = CounterMetricFamily(f"{PREFIX}_delivered_rows", "Rows ClickHouse acknowledged (durable).", labels=sink)
    inserts = CounterMetricFamily(
        f"{PREFIX}_inserts", "INSERT statements ClickHouse acknowledged (durable).", labels=sink
    )
    last_success = GaugeMetricFamily(
        f"{PREFIX}_last_success_timestamp_seconds", "Time of the last successful INSERT (0: never).", labels=sink
    )
    last_error = GaugeMetricFamily(
        f"{PREFIX}_last_error_timestamp_seconds",
        "Time of the last error, by its class (unavailable, configuration, rejected).",
        labels=["sink", "error_class"],
    )
    paused = GaugeMetricFamily(f"{PREFIX}_paused", "1 while a configuration error pauses the sink.", labels=sink)
    unrecorded = CounterMetricFamily(
        f"{PREFIX}_unrecorded_changes",
        "Changes the outbox could not record: they reach ClickHouse with the object's next change or a backfill.",
        labels=sink,
    )
    level = GaugeMetricFamily(f"{PREFIX}_queue_status_level", "0 ok, 1 warning, 2 critical, per queue.", labels=sink)
    for queue in found.queues:
        name = [queue.name]
        pending.add_metric(name, queue.pending)
        oldest.add_metric(name, queue.oldest_pending_age_seconds or 0.0)
        retrying.add_metric(name, queue.retrying)
        for reason, count in sorted(queue.dead_letters_by_reason.items()):
            dead.add_metric([queue.name, reason], count)
        rows.add_metric(name, queue.rows_delivered)
        inserts.add_metric(name, queue.inserts)
        last_success.add_metric(name, _timestamp(queue.last_success_at))
        if queue.last_error:
            last_error.add_metric([queue.name, queue.last_error.error_class], _timestamp(queue.last_error.at))
        paused.add_metric(name, 1 if queue.paused else 0)
        unrecorded.add_metric(name, queue.unrecorded_changes)
        level.add_metric(name, int(found.queue_level(queue.name)))

    clickhouse_up = GaugeMetricFamily(f"{PREFIX}_clickhouse_up", "1 when ClickHouse answered the scrape's query.")
    clickhouse_up.add_metric([], 1 if found.clickhouse.reachable else 0)
    clickhouse_info = InfoMetricFamily(f"{PREFIX}_clickhouse", "The ClickHouse server's version.")
    if found.clickhouse.version:
        clickhouse_info.add_metric([], {"version": found.clickhouse.version})
    mutations_pending = GaugeMetricFamily(
        f"{PREFIX}_mutations_pending", "Unfinished mutations (retirement) on the plugin's tables.", labels=["table"]
    )
    mutations_failed = GaugeMetricFamily(
        f"{PREFIX}_mutations_failed", "Mutations on the plugin's tables whose last try failed.", labels=["table"]
    )
    oldest_mutation = GaugeMetricFamily(
        f"{PREFIX}_oldest_mutation_age_seconds", "Age of the oldest unfinished mutation (0 when none)."
    )
    if found.mutations is not None:
        tables = sorted({f"{m.database}.{m.table}" for m in found.mutations})
        for table in tables:
            mine = [m for m in found.mutations if f"{m.database}.{m.table}" == table]
            mutations_pending.add_metric([table], sum(1 for m in mine if not m.failed))
            mutations_failed.add_metric([table], sum(1 for m in mine if m.failed))
        oldest_mutation.add_metric([], max((m.age_seconds for m in found.mutations), default=0.0))
    sweep = GaugeMetricFamily(
        f"{PREFIX}_sweep_last_run_timestamp_seconds", "When the periodic sweep (Celery beat) last ran (0: never)."
    )
    sweep.add_metric([], _timestamp(found.sweep.last_run_at))
    overall = GaugeMetricFamily(f"{PREFIX}_status_level", "0 ok, 1 warning, 2 critical: the status command's code.")
    overall.add_metric([], int(found.level))
    return [
        pending,
        oldest,
        retrying,
        dead,
        rows,
        inserts,
        last_success,
        last_error,
        paused,
        unrecorded,
        level,
        clickhouse_up,
        clickhouse_info,
        mutations_pending,
        mutations_failed,
        oldest_mutation,
        sweep,
        overall,
    ]


class StatusCollector:
    """A prometheus-client collector: each scrape reads the plugin's status afresh."""

    def collect(self) -> Iterator[Metric]:
        yield from families(status.collect())


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector())
    return generate_latest(registry)


def allowed(request: HttpRequest) -> bool:
    """Staff logged in to the LMS, or a scraper presenting ``ASPECTS_SINK_METRICS_TOKEN`` as a bearer token."""
    # A token read from a file or a secret often ends with a newline: neither side's whitespace counts.
    token = str(aspects_settings.ASPECTS_SINK_METRICS_TOKEN or "").strip()
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/aspects_sink/metrics``: the exposition, for staff or the metrics token; 403 for anyone else."""
    if not allowed(request):
        return HttpResponse("staff or a metrics token required\n", status=403, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
