"""
What each drain and backfill batch tells the APM and the logs: edx-django-utils' ``set_custom_attribute`` (New
Relic, Datadog, OpenTelemetry, as the site's ``OPENEDX_TELEMETRY`` says) and one structured log line per drain.

Attribute names start with ``aspects_sink.`` so a dashboard can find them among the platform's own.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

from edx_django_utils.monitoring import set_custom_attribute

log = logging.getLogger(__name__)


class DrainReport(Protocol):
    """What a drain reports (:class:`aspects_sink.delivery.DrainReport`, a layer above this one)."""

    delivered: int
    retried: int
    parked: int
    inserts: int


def record_batch(kind: str, sink: str, *, rows: int, inserts: int, seconds: float, outcome: str) -> None:
    """Tell the APM about one batch of ``kind`` (drain or backfill): its sink, rows, INSERTs, time and outcome."""
    set_custom_attribute("aspects_sink.kind", kind)
    set_custom_attribute("aspects_sink.sink", sink)
    set_custom_attribute("aspects_sink.rows", rows)
    set_custom_attribute("aspects_sink.inserts", inserts)
    set_custom_attribute("aspects_sink.seconds", round(seconds, 3))
    set_custom_attribute("aspects_sink.outcome", outcome)


def drain_outcome(report: DrainReport) -> str:
    """``ok``, ``retrying`` (ClickHouse unavailable or objects rejected), ``parked`` or ``idle``."""
    if report.parked:
        return "parked"
    if report.retried:
        return "retrying"
    return "ok" if report.delivered else "idle"


def observed_drain(drain: Callable[..., DrainReport]) -> Callable[..., DrainReport]:
    """Wrap the drain: one set of APM attributes and one ``key=value`` log line per drain, whatever it did."""

    @functools.wraps(drain)
    def observed(sink_name: str, *args, **kwargs) -> DrainReport:
        started = time.monotonic()
        try:
            report = drain(sink_name, *args, **kwargs)
        except Exception:
            seconds = time.monotonic() - started
            record_batch("drain", sink_name, rows=0, inserts=0, seconds=seconds, outcome="error")
            log.info("aspects_sink drain sink=%s rows=0 inserts=0 seconds=%.3f outcome=error", sink_name, seconds)
            raise
        seconds = time.monotonic() - started
        outcome = drain_outcome(report)
        record_batch(
            "drain", sink_name, rows=report.delivered, inserts=report.inserts, seconds=seconds, outcome=outcome
        )
        log.info(
            "aspects_sink drain sink=%s rows=%d inserts=%d retried=%d parked=%d seconds=%.3f outcome=%s",
            sink_name,
            report.delivered,
            report.inserts,
            report.retried,
            report.parked,
            seconds,
            outcome,
        )
        return report

    return observed
